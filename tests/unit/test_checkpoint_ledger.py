"""The signer's checkpoint rules without a token: typed requests only, the bytes it signs,
and the ledger that refuses to go back in history, also after a restart (it reads its file)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from signer.checkpoints import (
    AuditSigner,
    CheckpointLedger,
    SignedCheckpoint,
    read_ledger,
    verify_checkpoint,
)
from signer.codec import decode_item, encode
from signer.errors import ErrorKind, SignerError
from signer.protocol import CHECKPOINT_DOMAIN, CheckpointRequest, checkpoint_message

NOW = 1_800_000_000
H1, H2 = b"\x01" * 32, b"\x02" * 32


def _signed(req: CheckpointRequest) -> SignedCheckpoint:
    key = ec.generate_private_key(ec.SECP256R1())
    blob = AuditSigner(key, key.public_key()).sign(req)
    return SignedCheckpoint.from_result(req, blob)


def test_wire_takes_the_four_fields_only() -> None:
    good = {"last_id": 5, "last_hash": H1, "count": 5, "at": NOW}
    assert decode_item("checkpoint", encode(good)) == CheckpointRequest(5, H1, 5, NOW)
    for bad in (
        {**good, "message": b"caller bytes"},
        {**good, "last_hash": b"short"},
        {**good, "count": 6},  # more rows than the last id
        {**good, "last_id": -1, "count": 0},
        {**good, "at": "now"},
        {k: v for k, v in good.items() if k != "count"},
    ):
        with pytest.raises(SignerError) as err:
            decode_item("checkpoint", encode(bad))
        assert err.value.kind == ErrorKind.BAD_REQUEST


def test_message_is_domain_separated_and_covers_every_field() -> None:
    base = CheckpointRequest(5, H1, 5, NOW)
    msg = checkpoint_message(base)
    assert msg.startswith(CHECKPOINT_DOMAIN) and msg.endswith(H1)
    others = [
        CheckpointRequest(6, H1, 5, NOW),
        CheckpointRequest(5, H2, 5, NOW),
        CheckpointRequest(5, H1, 4, NOW),
        CheckpointRequest(5, H1, 5, NOW + 1),
    ]
    assert len({msg, *map(checkpoint_message, others)}) == 5


def test_signatures_verify_only_unaltered() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    req = CheckpointRequest(5, H1, 5, NOW)
    blob = AuditSigner(key, key.public_key()).sign(req)
    signed = SignedCheckpoint.from_result(req, blob)
    assert verify_checkpoint(key.public_key(), req, signed.signature)
    assert not verify_checkpoint(
        key.public_key(), CheckpointRequest(5, H1, 4, NOW), signed.signature
    )
    other = ec.generate_private_key(ec.SECP256R1())
    assert not verify_checkpoint(other.public_key(), req, signed.signature)
    with pytest.raises(SignerError):
        AuditSigner(key, other.public_key())  # a token key that is not the recorded one


def test_ledger_refuses_going_back_and_remembers_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "checkpoints.jsonl"
    ledger = CheckpointLedger(path, clock=lambda: NOW)
    first = CheckpointRequest(10, H1, 10, NOW - 5)
    ledger.admit(first)
    ledger.append(_signed(first))
    for restarted in (False, True):
        if restarted:
            ledger = CheckpointLedger(path, clock=lambda: NOW)
            assert ledger.last == first
        for bad in (
            CheckpointRequest(9, H1, 9, NOW),  # fewer rows: the newest were removed
            CheckpointRequest(10, H1, 9, NOW),  # a row removed in the middle
            CheckpointRequest(10, H2, 10, NOW),  # the same id with another hash
            CheckpointRequest(11, H2, 11, NOW - 10),  # time going back
            CheckpointRequest(11, H2, 11, NOW + 301),  # not now
        ):
            with pytest.raises(SignerError) as err:
                ledger.admit(bad)
            assert err.value.kind == ErrorKind.PROFILE_VIOLATION
    ledger.admit(CheckpointRequest(10, H1, 10, NOW))  # nothing new: same head, later
    nxt = CheckpointRequest(12, H2, 12, NOW)
    ledger.admit(nxt)
    ledger.append(_signed(nxt))
    assert [e.request for e in read_ledger(path)] == [first, nxt]
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_damaged_ledger_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    path.write_text('{"last_id": 3, "oops": true}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 1"):
        CheckpointLedger(path)
