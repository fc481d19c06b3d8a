"""The signer's own input checks and the staged pipeline's per-item isolation, without a token."""

from __future__ import annotations

import pytest

from signer.errors import ErrorKind, SignerError
from signer.hsm.errors import TokenFault
from signer.issuance import build
from signer.issuance.checks import (
    COUNTRIES,
    MAX_TIME,
    MIN_TIME,
    check_serial,
    check_subject,
    check_time,
    check_window,
)

CN = "2.5.4.3"
C = "2.5.4.6"


def test_country_codes_are_iso_3166_alpha_2() -> None:
    assert {"TW", "DE", "US", "JP"} <= COUNTRIES
    assert len(COUNTRIES) >= 249 and all(len(c) == 2 and c.isupper() for c in COUNTRIES)
    check_subject(((C, "TW"), (CN, "x")))
    for bad in ("T", "TWN", "tw", "ZZ", "XX", "T1", "  "):
        with pytest.raises(SignerError) as err:
            check_subject(((C, bad), (CN, "x")))
        assert err.value.kind is ErrorKind.PROFILE_VIOLATION, bad


@pytest.mark.parametrize(
    ("oid", "value", "ok"),
    [
        (CN, "Wang Xiao-Ming 王小明", True),
        (CN, "x" * 64, True),
        (CN, "x" * 65, False),
        (CN, "a\x00b", False),
        (CN, "a\x1fb", False),
        (CN, "a\x7fb", False),
        (CN, "a\x9fb", False),
        (CN, "a\ud800b", False),
        (CN, " leading", False),
        ("2.5.4.5", "A123456789", True),
        ("2.5.4.5", "A123_456", False),  # '_' is not in PrintableString
        ("2.5.4.5", "A12345é", False),
        ("1.2.840.113549.1.9.1", "a@example.org", True),
        ("1.2.840.113549.1.9.1", "é@example.org", False),
        ("1.2.840.113549.1.9.1", "a" * 256, False),
        ("2.5.4.7", "Taipei", False),  # locality: not an attribute of the profile
    ],
)
def test_subject_values_fit_their_attribute(oid: str, value: str, ok: bool) -> None:
    if ok:
        check_subject(((oid, value),))
        return
    with pytest.raises(SignerError) as err:
        check_subject(((oid, value),))
    assert err.value.kind is ErrorKind.PROFILE_VIOLATION


def test_times_lie_between_1950_and_9999() -> None:
    check_time("t", MIN_TIME)
    check_time("t", MAX_TIME)
    check_time("t", 0)
    for bad in (MIN_TIME - 1, MAX_TIME + 1, 2**62, -(2**62)):
        with pytest.raises(SignerError) as err:
            check_time("t", bad)
        assert err.value.kind is ErrorKind.BAD_REQUEST
    with pytest.raises(SignerError):
        check_window("a", 100, "b", 100)
    check_window("a", 100, "b", 101)


def test_serials_are_positive_and_at_most_20_octets() -> None:
    check_serial(1)
    check_serial(2**159 - 1)
    for bad in (0, -1, 2**159, 2**200):
        with pytest.raises(SignerError) as err:
            check_serial(bad)
        assert err.value.kind is ErrorKind.BAD_REQUEST


def _prepare(req: int) -> int:
    if req == 2:
        raise ValueError("Attribute's length must be >= 2 and <= 2, but it was 1")
    if req == 3:
        raise SignerError(ErrorKind.PROFILE_VIOLATION, "refused by a check")
    return req


def _sign(prepared: int) -> int:
    if prepared == 5:
        raise TokenFault("the token went away")
    return prepared


def _release(prepared: int, signed: int) -> bytes:
    if prepared == 4:
        raise OSError(75, "Value too large for defined data type")
    return bytes([signed])


def test_an_unforeseen_exception_fails_only_its_item() -> None:
    out = build.staged([0, 1, 2, 3, 4, 6], _prepare, _sign, _release)
    assert out[0] == b"\x00" and out[1] == b"\x01" and out[5] == b"\x06"
    assert isinstance(out[2], SignerError) and out[2].kind is ErrorKind.BAD_REQUEST
    assert isinstance(out[3], SignerError) and out[3].kind is ErrorKind.PROFILE_VIOLATION
    assert isinstance(out[4], SignerError) and out[4].kind is ErrorKind.BAD_REQUEST
    assert not out[2].retryable and not out[4].retryable


def test_a_token_fault_still_propagates_so_the_worker_heals() -> None:
    with pytest.raises(TokenFault):
        build.staged([0, 5, 1], _prepare, _sign, _release)


def test_frames_nested_deeper_than_typed_items_are_refused() -> None:
    """msgpack decodes at most 1024 levels: a frame at that limit decoded in the server, but
    the batch that carries its item to a worker is a level deeper and did not decode there, so
    the batch went unanswered. The server now refuses items nested past MAX_DEPTH."""
    import msgpack

    from signer.codec import MAX_DEPTH, Frame, nested_at_most

    deep: list[object] = []
    for _ in range(1021):  # with the frame's map and items list: 1024 levels
        deep = [deep]
    frame = msgpack.packb({"v": 1, "id": 3, "op": "issue", "items": [deep]})
    msgpack.unpackb(frame)  # decodes as a frame ...
    batch = msgpack.packb({"t": "batch", "id": 1, "items": [("issue", deep)]})
    with pytest.raises(ValueError):  # ... but not as the worker's batch
        msgpack.unpackb(batch)
    with pytest.raises(SignerError) as err:
        Frame.decode(frame)
    assert err.value.kind is ErrorKind.BAD_REQUEST
    assert nested_at_most([{"subject": [["2.5.4.3", "x"]], "serials": list(range(10))}], 4)
    assert not nested_at_most([{"subject": [["2.5.4.3", ["x"]]]}], 4)
    assert nested_at_most([[[]]] * 3, MAX_DEPTH)
