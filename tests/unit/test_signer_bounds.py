"""The signer's bounds on OCSP answers and CRLs (signer/issuance/bounds.py), its record of CRL
numbers (signer/crl_numbers.py) and their configuration, without a token."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from config.loader import ConfigError, load
from signer.crl_numbers import CrlNumbers
from signer.errors import ErrorKind, SignerError
from signer.issuance.bounds import Bounds

NOW = 1_800_000_000
B = Bounds(ocsp_max_validity=7 * 86400, crl_max_validity=2 * 86400, max_clock_skew=600)


def kind(fn, *args) -> ErrorKind | None:  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except SignerError as exc:
        return exc.kind
    return None


@pytest.mark.parametrize(
    "this_update, next_update, revoked_at, expected",
    [
        (NOW, NOW + 7 * 86400, None, None),  # exactly the maximum
        (NOW, NOW + 7 * 86400 + 1, None, ErrorKind.VALIDITY_TOO_LONG),
        (NOW, NOW + 100 * 365 * 86400, None, ErrorKind.VALIDITY_TOO_LONG),
        (NOW + 600, NOW + 3600, None, None),  # at the edge of the skew
        (NOW + 601, NOW + 3600, None, ErrorKind.CLOCK_SKEW),
        (NOW - 601, NOW + 3600, None, ErrorKind.CLOCK_SKEW),  # backdated beyond the skew
        (NOW, NOW, None, ErrorKind.BAD_REQUEST),
        (NOW, NOW + 3600, NOW - 86400, None),
        (NOW, NOW + 3600, NOW + 600, None),
        (NOW, NOW + 3600, NOW + 601, ErrorKind.REVOCATION_IN_FUTURE),
    ],
)
def test_ocsp_bounds(
    this_update: int, next_update: int, revoked_at: int | None, expected: ErrorKind | None
) -> None:
    assert kind(B.check_ocsp, this_update, next_update, revoked_at, NOW) is expected


@pytest.mark.parametrize(
    "this_update, next_update, entries, expected",
    [
        (NOW, NOW + 2 * 86400, [NOW - 5, NOW - 3], None),
        (NOW, NOW + 2 * 86400 + 1, [], ErrorKind.VALIDITY_TOO_LONG),
        (NOW + 601, NOW + 86400, [], ErrorKind.CLOCK_SKEW),
        (NOW - 601, NOW + 86400, [], ErrorKind.CLOCK_SKEW),
        (NOW, NOW + 86400, [NOW - 5, NOW + 3600], ErrorKind.REVOCATION_IN_FUTURE),
    ],
)
def test_crl_bounds(
    this_update: int, next_update: int, entries: list[int], expected: ErrorKind | None
) -> None:
    assert kind(B.check_crl, this_update, next_update, iter(entries), NOW) is expected


def test_crl_numbers_increase_per_issuer_and_survive_a_restart(tmp_path: Path) -> None:
    numbers = CrlNumbers(tmp_path / "state")
    numbers.reserve("issuing-1", 5)
    numbers.reserve("issuing-2", 1)  # each issuer has its own sequence
    for bad in (5, 4, 0):
        assert kind(numbers.reserve, "issuing-1", bad) is ErrorKind.CRL_NUMBER_NOT_INCREASING
    numbers.reserve("issuing-1", 6)
    again = CrlNumbers(tmp_path / "state")  # a restarted daemon
    assert again.last() == {"issuing-1": 6, "issuing-2": 1}
    assert kind(again.reserve, "issuing-1", 6) is ErrorKind.CRL_NUMBER_NOT_INCREASING
    again.reserve("issuing-1", 1 << 150)  # up to 159 bits


def test_a_damaged_record_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "crl-numbers.json").write_text("{not json")
    with pytest.raises(ValueError):
        CrlNumbers(tmp_path)
    (tmp_path / "crl-numbers.json").write_text('{"issuing-1": "7"}')
    with pytest.raises(ValueError):
        CrlNumbers(tmp_path)


def _reserve_range(state: str, start: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    numbers = CrlNumbers(Path(state))
    ok = 0
    for n in range(start, start + 40):
        try:
            numbers.reserve("issuing-1", n)
            ok += 1
        except SignerError:
            pass
    out.put(ok)


def test_several_processes_never_both_get_a_number(tmp_path: Path) -> None:
    """Four processes race over the same numbers: each number is granted at most once and
    the record ends at the highest (the flock serialises read-check-write)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_reserve_range, args=(str(tmp_path), 1, out)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    granted = sum(out.get(timeout=5) for _ in procs)
    assert granted <= 40
    assert CrlNumbers(tmp_path).last() == {"issuing-1": 40}


def _bounds(tmp_path: Path, text: str) -> Bounds:
    from config.sections import parse_section
    from signer.config import SignerSection
    from signer.config import _bounds as parse

    path = tmp_path / "ca.toml"
    path.write_text(text)
    cfg = load(path, environ={})
    return parse(cfg, parse_section(cfg, "signer", SignerSection))


def test_config_keys(tmp_path: Path) -> None:
    assert _bounds(tmp_path, "[signer]\n") == Bounds(7 * 24 * 3600, 7 * 24 * 3600, 600)
    assert _bounds(
        tmp_path,
        "[signer]\nocsp_max_validity_hours = 48\n"
        "crl_max_validity_hours = 36\nmax_clock_skew_seconds = 30\n",
    ) == Bounds(48 * 3600, 36 * 3600, 30)
    for bad in (
        "ocsp_max_validity_hours = 0",
        "crl_max_validity_hours = -1",
        "max_clock_skew_seconds = 100000",
        'ocsp_max_validity_hours = "a week"',
    ):
        with pytest.raises(ConfigError):
            _bounds(tmp_path, f"[signer]\n{bad}\n")
    # the gateway's CRLs must fit the signer's bound, checked at start
    with pytest.raises(ConfigError, match="crl_next_update_hours"):
        _bounds(
            tmp_path,
            "[signer]\ncrl_max_validity_hours = 12\n[policy]\ncrl_next_update_hours = 24\n",
        )
