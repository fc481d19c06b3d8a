"""A Hypothesis fuzz of the signer's RPC against the real daemon on a real SoftHSM token.

Two kinds of input, written on a raw socket so nothing in the client library can tidy them up:

* well-framed requests of every operation whose typed items are mutated field by field
  (hostile integers, strings with control characters, wrong types, missing and extra fields,
  keys the profile forbids, items nested up to msgpack's limit), at least ``MIN_ITEMS`` items
  in all: every one gets an answer with the request's id, one result per item, each a DER or
  an error of a known kind (a frame refused as a whole gets one ``bad_request``);
* garbage framing (lengths over the limit, truncated frames, understated lengths, random
  bytes): the server closes that connection (after at most some error frames), and a
  well-framed payload that is not a msgpack map gets an error and leaves the connection
  usable.

Afterwards the same daemon issues a certificate, no worker was restarted, and the daemon log
shows that no item reached ``build.unforeseen``: the signer's own checks refused them all.
Each request must be answered within the socket timeout (20 s).

Examples are derandomised so that ``make test`` is reproducible (480 frames, about 14,100
items); ``CA_FUZZ_RANDOM=1`` explores new ones, ``CA_FUZZ_EXAMPLES=N`` changes the count and
``CA_FUZZ_SHRINK=1`` shrinks a failing example.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from config.loader import load
from signer.codec import MAX_DEPTH, MAX_FRAME, nested_at_most
from signer.config import load_signer_config
from signer.errors import ErrorKind
from signer.vocabulary import REVOCATION_REASONS
from tests.support.signer_proc import running_signer, socket_of

MIN_ITEMS = 10_000
# The run is bounded by its example counts (13 s measured on a lightly loaded machine, 45-75 s
# while seven other test suites shared the 2 cores at load 15-20) and hard-bounded by
# this timeout; no wall-clock assertion, which would fail on a busy machine rather than on a
# signer that misbehaves.
TIMEOUT = pytest.mark.timeout(240)
KINDS = {k.value for k in ErrorKind}
RANDOM = os.environ.get("CA_FUZZ_RANDOM") == "1"
SHRINK = os.environ.get("CA_FUZZ_SHRINK") == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    config: Path
    socket: Path
    metrics_port: int
    log: Path
    issuing: x509.Certificate
    items: int = 0
    frames: int = 0
    garbage: int = 0
    started: float = field(default_factory=time.monotonic)


@pytest.fixture(scope="module")
def daemon(ca_config_ec: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    port = free_port()
    log = tmp_path_factory.mktemp("fuzz") / "signer.log"
    scfg = load_signer_config(load(ca_config_ec, environ={}))
    issuing = next(i.certificate for i in scfg.issuers.values() if i.active)
    env = {"CA_SIGNER_METRICS_PORT": str(port), "CA_SIGNER_METRICS_HOST": "127.0.0.1"}
    with running_signer(ca_config_ec, workers=2, env=env, log=log):
        yield Daemon(ca_config_ec, socket_of(ca_config_ec), port, log, issuing)


# -- the wire, by hand ------------------------------------------------------------------------
class Wire:
    """A blocking connection that writes bytes as given and reads whole frames."""

    def __init__(self, path: Path, timeout: float = 20.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _exactly(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                if buf:
                    raise AssertionError("the server closed in the middle of a frame")
                return None
            buf += chunk
        return bytes(buf)

    def read(self) -> dict[str, Any] | None:
        """The next frame the server sends, or None once it has closed the connection."""
        header = self._exactly(4)
        if header is None:
            return None
        (length,) = struct.unpack(">I", header)
        payload = self._exactly(length)
        assert payload is not None, "the server closed in the middle of a frame"
        frame = msgpack.unpackb(payload, raw=False)
        assert isinstance(frame, dict) and frame.get("v") == 1, frame
        return frame


def framed(obj: Any) -> bytes:
    payload = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(payload)) + payload


# -- what a hostile caller can put in a field -------------------------------------------------
def _spki(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


GOOD_SPKI = _spki(ec.generate_private_key(ec.SECP256R1()))
SPKIS = [
    GOOD_SPKI,
    _spki(ec.generate_private_key(ec.SECP384R1())),
    _spki(ec.generate_private_key(ec.SECP256K1())),
    _spki(rsa.generate_private_key(65537, 2048)),
    _spki(rsa.generate_private_key(3, 2048)),
    _spki(rsa.generate_private_key(65537, 1024)),
    _spki(ed25519.Ed25519PrivateKey.generate()),
    GOOD_SPKI[:-1],
    GOOD_SPKI[:20],
    b"",
    b"\x30\x03\x02\x01\x01",
]
EDGE_INTS = [
    0, 1, -1, 2**31 - 1, 2**31, 2**32, 2**53, 2**62, 2**63 - 1, 2**64 - 1, -(2**63),
    -631152001, -631152000, 253402300799, 253402300800, 10**12,
]  # fmt: skip
INTS = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-(2**63), 2**64 - 1))
TEXT = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(max_codepoint=0x9F), max_size=8),
    st.sampled_from(["", " x", "x ", "TW", "T", "tw", "ZZ", "TWN", "A\x7fB", "é", "x" * 65]),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.floats(), INTS, TEXT, st.binary(max_size=64),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
)  # fmt: skip
ANY = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
OIDS = ["2.5.4.6", "2.5.4.10", "2.5.4.11", "2.5.4.3", "2.5.4.5", "1.2.840.113549.1.9.1"]
SUBJECTS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([*OIDS, "2.5.4.7", "1.2.3", "x"]), TEXT).map(list),
        ANY,
    ),
    max_size=18,
)
SERIALS = st.one_of(
    st.integers(1, 2**200).map(lambda n: format(n, "x")),
    st.sampled_from(["", "0", "00ff", "ABCDEF", "xyz", "f" * 40, "1" + "0" * 40, "-1"]),
)
NAMES = st.sampled_from(["issuing-1", "root-1", "nope", "", "signing", "encryption", "ca"])


def _base_issue(now: int) -> dict[str, Any]:
    return {
        "spki": GOOD_SPKI,
        "subject": [["2.5.4.6", "TW"], ["2.5.4.3", f"fuzz {secrets.token_hex(3)}"]],
        "profile": "signing",
        "serial": format(secrets.randbits(127) | 1 << 126, "x"),
        "not_before": now - 60,
        "not_after": now + 86400,
        "issuer": None,
    }


def _base_ocsp(now: int) -> dict[str, Any]:
    return {
        "issuer": "issuing-1",
        "serial": format(secrets.randbits(100) | 1 << 99, "x"),
        "status": "good",
        "this_update": now,
        "next_update": now + 3600,
        "revoked_at": None,
        "reason": None,
        "nonce": None,
    }


def _base_crl(now: int) -> dict[str, Any]:
    return {
        "issuer": "issuing-1",
        "crl_number": secrets.randbelow(2**32),
        "this_update": now,
        "next_update": now + 86400,
        "serials": [format(secrets.randbits(64) | 1 << 63, "x") for _ in range(3)],
        "revoked_at": [now - 60] * 3,
        "reasons": ["unspecified", "keyCompromise", "superseded"],
    }


BASES = {"issue": _base_issue, "ocsp": _base_ocsp, "crl": _base_crl}
NEAR: dict[str, st.SearchStrategy[Any]] = {
    "spki": st.one_of(st.sampled_from(SPKIS), st.binary(max_size=100)),
    "subject": SUBJECTS,
    "profile": NAMES,
    "issuer": st.one_of(st.none(), NAMES),
    "serial": SERIALS,
    "status": st.sampled_from(["good", "revoked", "unknown", "bad", ""]),
    "reason": st.one_of(st.none(), st.sampled_from([*REVOCATION_REASONS, "nope"])),
    "nonce": st.one_of(st.none(), st.binary(max_size=200)),
    "crl_number": INTS,
    "serials": st.lists(st.one_of(SERIALS, ANY), max_size=6),
    "reasons": st.lists(st.sampled_from([*REVOCATION_REASONS, "nope", ""]), max_size=6),
}
ACTIONS = ["keep"] * 7 + ["near", "near", "any", "drop"]


@st.composite
def mutated_item(draw: st.DrawFn, op: str) -> dict[str, Any]:
    """A valid item of ``op`` with some fields replaced, dropped or added."""
    item = BASES[op](int(time.time()))
    for key in list(item):
        action = draw(st.sampled_from(ACTIONS))
        if action == "near":
            item[key] = draw(NEAR.get(key, INTS))
        elif action == "any":
            item[key] = draw(ANY)
        elif action == "drop":
            del item[key]
    if op == "crl" and draw(st.booleans()) and "revoked_at" in item:
        item["revoked_at"] = draw(st.lists(INTS, max_size=6))
    if draw(st.integers(0, 15)) == 0:  # a field the profile decides: CA flag, extensions, ...
        item[draw(st.sampled_from(["ca", "key_usage", "extensions", "x"]))] = draw(ANY)
    return item


@st.composite
def typed_frame(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["issue"] * 5 + ["ocsp"] * 3 + ["crl", "health"]))
    if op == "health":
        return {"v": 1, "id": draw(st.integers(1, 2**31)), "op": "health"}
    # a few mutated items among valid ones: a hostile item must fail alone in a full batch,
    # and drawing 64 mutated items per frame would spend the time bound on generation alone
    mutated = draw(st.lists(mutated_item(op), min_size=1, max_size=8 if op == "crl" else 12))
    now = int(time.time())
    filler = 0 if op == "crl" else draw(st.integers(40, 64 - len(mutated)))
    items = [BASES[op](now) for _ in range(filler)]
    for n, item in enumerate(mutated):
        items.insert((n * 7919) % (len(items) + 1), item)
    frame: dict[str, Any] = {"v": 1, "id": draw(st.integers(1, 2**31)), "op": op, "items": items}
    if draw(st.integers(0, 7)) == 0:
        frame["priority"] = "bulk"
    if draw(st.integers(0, 7)) == 0:
        frame["deadline"] = time.time() + 60
    return frame


@st.composite
def bent_frame(draw: st.DrawFn) -> dict[str, Any]:
    """A well-framed msgpack map whose frame-level fields are wrong."""
    frame = draw(typed_frame())
    key = draw(st.sampled_from(["v", "id", "op", "items", "deadline", "priority"]))
    if draw(st.booleans()):
        frame.pop(key, None)
    else:
        frame[key] = draw(ANY)
    return frame


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@st.composite
def deep_frame(draw: st.DrawFn) -> dict[str, Any]:
    """Items nested deeper than any typed item: msgpack decodes up to 1024 levels but packs
    fewer, so such a frame used to decode, fail to pack for its worker and never be answered."""
    frame = draw(typed_frame())
    items = frame.setdefault("items", [])
    items.insert(draw(st.integers(0, len(items))), nested(draw(st.integers(2, 1020))))
    return frame


def check_answer(daemon: Daemon, sent: dict[str, Any], answer: dict[str, Any] | None) -> None:
    """The answer a well-framed request must get."""
    assert answer is not None, "the server closed the connection on a well-framed request"
    deadline = sent.get("deadline")
    decodable = (
        sent.get("v") == 1
        and isinstance(sent.get("id"), int)
        and (deadline is None or isinstance(deadline, int | float))
        and isinstance(sent.get("items", []), list)
        and sent.get("priority", "interactive") in ("interactive", "bulk")
        and nested_at_most(sent.get("items", []), MAX_DEPTH)
    )
    if not decodable or sent.get("op") not in ("issue", "ocsp", "crl", "health"):
        # a frame-level refusal: the whole request, under its id when it had one
        assert answer.get("error", {}).get("error") == "bad_request", answer
        assert answer["id"] in (0, sent.get("id")), answer
        return
    assert answer["id"] == sent["id"], (answer.get("id"), sent["id"])
    if sent["op"] == "health":
        assert answer["body"]["status"] in ("ok", "degraded"), answer
        return
    assert "error" not in answer, answer["error"]  # admitted: every item gets its own result
    results = answer["results"]
    assert len(results) == len(sent.get("items", []))
    for result in results:
        if "der" in result:
            assert isinstance(result["der"], bytes) and result["der"]
            if sent["op"] == "issue":
                cert = x509.load_der_x509_certificate(result["der"])
                cert.verify_directly_issued_by(daemon.issuing)
        else:
            assert result["error"] in KINDS, result
            assert result["error"] not in ("worker_failed", "internal"), result
    daemon.items += len(results)


FUZZ = settings(
    max_examples=int(os.environ.get("CA_FUZZ_EXAMPLES", "480")),
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    # shrinking against a live daemon can outlast the test's timeout: the failing example is
    # printed as found unless CA_FUZZ_SHRINK=1
    phases=list(Phase) if SHRINK else [Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@TIMEOUT
def test_every_well_framed_request_is_answered(daemon: Daemon) -> None:
    wire = Wire(daemon.socket)

    @FUZZ
    @given(st.one_of(typed_frame(), typed_frame(), typed_frame(), bent_frame(), deep_frame()))
    def well_framed(frame: dict[str, Any]) -> None:
        wire.send(framed(frame))
        check_answer(daemon, frame, wire.read())
        daemon.frames += 1

    try:
        well_framed()
    finally:
        wire.close()
    print(f"{daemon.frames} frames, {daemon.items} items answered")
    assert daemon.items >= MIN_ITEMS, daemon.items


# -- garbage framing --------------------------------------------------------------------------
HUGE = st.integers(MAX_FRAME + 1, 2**32 - 1).map(lambda n: struct.pack(">I", n))
NOT_A_MAP = st.one_of(
    st.binary(min_size=1, max_size=64).filter(lambda b: b[0] in (0xC1, 0xD4, 0xFF, 0xDF)),
    ANY.filter(lambda v: not isinstance(v, dict)).map(
        lambda v: msgpack.packb(v, use_bin_type=True)
    ),
    st.just(b""),
    st.just(b"\xc1garbage"),
)


@st.composite
def garbage(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["huge", "truncated", "short length", "random", "not a map"]))
    if kind == "huge":
        return kind, draw(HUGE) + draw(st.binary(max_size=32))
    if kind == "truncated":
        payload = msgpack.packb({"v": 1, "id": 1, "op": "issue", "items": [_base_issue(0)]})
        cut = draw(st.integers(0, len(payload) - 1))
        return kind, struct.pack(">I", len(payload)) + payload[:cut]
    if kind == "short length":  # the header understates the payload: the rest is misread
        payload = msgpack.packb({"v": 1, "id": 2, "op": "health", "x": draw(st.binary())})
        cut = draw(st.integers(0, len(payload) - 1))
        return kind, struct.pack(">I", cut) + payload
    if kind == "random":
        return kind, draw(st.binary(min_size=1, max_size=300))
    payload = draw(NOT_A_MAP)
    return kind, struct.pack(">I", len(payload)) + payload


@TIMEOUT
def test_garbage_framing_closes_the_connection(daemon: Daemon) -> None:
    @settings(FUZZ, max_examples=240)
    @given(garbage())
    def hostile(case: tuple[str, bytes]) -> None:
        kind, data = case
        wire = Wire(daemon.socket, timeout=10)
        try:
            wire.send(data)
            if kind == "huge":
                # refused at the header: an error, then the server closes without waiting
                answer = wire.read()
                assert answer is not None and answer["error"]["error"] == "bad_request"
                assert wire.read() is None
            elif kind == "not a map":
                # the framing holds: an error, and the connection still serves
                answer = wire.read()
                assert answer is not None and answer["error"]["error"] == "bad_request"
                wire.send(framed({"v": 1, "id": 9, "op": "health"}))
                assert (wire.read() or {}).get("id") == 9
            else:
                # the frame never completes: when the sender stops, the server closes
                wire.sock.shutdown(socket.SHUT_WR)
                for _ in range(100):
                    answer = wire.read()
                    if answer is None:
                        break
                    assert "error" in answer or "body" in answer or "results" in answer
                else:
                    raise AssertionError("the server kept a garbage connection open")
        finally:
            wire.close()
        daemon.garbage += 1

    hostile()
    print(f"{daemon.garbage} garbage connections closed")


def test_the_daemon_survived_and_serves(daemon: Daemon) -> None:
    """Runs after both fuzz runs: no restart, no unforeseen item, a certificate issued."""
    wire = Wire(daemon.socket)
    try:
        item = _base_issue(int(time.time()))
        wire.send(framed({"v": 1, "id": 77, "op": "issue", "items": [item]}))
        answer = wire.read()
        assert answer is not None and answer["id"] == 77, answer
        cert = x509.load_der_x509_certificate(answer["results"][0]["der"])
        cert.verify_directly_issued_by(daemon.issuing)
        wire.send(framed({"v": 1, "id": 78, "op": "health"}))
        body = (wire.read() or {})["body"]
    finally:
        wire.close()
    assert [w["restarts"] for w in body["workers"]] == [0, 0], body
    assert all(w["state"] == "ready" for w in body["workers"]), body
    with urllib.request.urlopen(
        f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=3
    ) as resp:
        metrics = resp.read().decode()
    assert "\nca_signer_worker_restarts_total 0.0\n" in metrics
    log = daemon.log.read_text(errors="replace")
    assert "item refused: unexpected" not in log, "an item got past the signer's own checks"
    assert "Traceback" not in log
    print(f"fuzz module: {time.monotonic() - daemon.started:.1f}s after the daemon was ready")
