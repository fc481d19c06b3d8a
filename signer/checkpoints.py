"""Signed checkpoints of the audit chain's head: the signer's audit key vouches for (last id,
its hash, row count, time), so that a removed tail or a chain recomputed after an edit no longer
matches what was signed, whatever rights the attacker had in the database.

Three parts, so that each process holds only what it needs:

* ``verify_checkpoint`` / ``key_fingerprint``: pure cryptography, used by the worker before it
  releases a signature and by ``ca-admin audit verify`` (which never needs the token);
* ``AuditSigner``: the worker's audit key on the token; it signs only ``checkpoint_message`` of
  a typed request, never bytes a caller chose, and checks its own signature first;
* ``CheckpointLedger``: the daemon's memory of the last checkpoint it signed, kept in its own
  append-only file (``[signer] audit_checkpoint_file``, one JSON line per checkpoint, fsynced).
  A head lower than the last one signed (id or count), the same id with another hash, a time
  going backwards or far from the signer's clock is refused: a compromised gateway cannot get
  a signature over a truncated or forked history.

No PKCS#11 here (the worker hands ``AuditSigner`` a cryptography key object from
``signer.hsm``): the gateway and ``ca-admin`` import this module for the format and the checks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from signer.errors import ErrorKind, SignerError
from signer.protocol import FINGERPRINT_SIZE, CheckpointRequest, checkpoint_message

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
MAX_SKEW_SECONDS = 300  # a checkpoint's time must be this close to the signer's clock


def _hash_for(key: PublicKey) -> hashes.HashAlgorithm:
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def key_fingerprint(key: PublicKey) -> bytes:
    """SHA-256 over the SubjectPublicKeyInfo (what ``ca-keys audit-key`` prints)."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


def verify_checkpoint(key: PublicKey, req: CheckpointRequest, signature: bytes) -> bool:
    """True when ``signature`` is ``key``'s over this checkpoint's message."""
    message = checkpoint_message(req)
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), _hash_for(key))
        else:
            key.verify(signature, message, ec.ECDSA(_hash_for(key)))
    except InvalidSignature:
        return False
    return True


class AuditSigner:
    """The audit key in a worker: ``token_key`` signs on the token (a cryptography key object
    from ``signer.hsm``), ``public`` is the recorded public key it must match."""

    def __init__(self, token_key: Any, public: PublicKey) -> None:
        if token_key.public_key() != public:
            raise SignerError(ErrorKind.INTERNAL, "the audit key does not match its public key")
        self.key = token_key
        self.public = public
        self.fingerprint = key_fingerprint(public)

    def sign(self, req: CheckpointRequest) -> bytes:
        """Fingerprint + signature over the message built here; verified before release."""
        message = checkpoint_message(req)
        if isinstance(self.public, rsa.RSAPublicKey):
            sig = self.key.sign(message, padding.PKCS1v15(), _hash_for(self.public))
        else:
            sig = self.key.sign(message, ec.ECDSA(_hash_for(self.public)))
        if not verify_checkpoint(self.public, req, sig):
            raise SignerError(ErrorKind.SIGNATURE_CHECK_FAILED, "checkpoint signature is bad")
        return self.fingerprint + sig


@dataclass(frozen=True)
class SignedCheckpoint:
    """One line of the ledger file (and one row of ``audit_checkpoints``)."""

    request: CheckpointRequest
    fingerprint: bytes
    signature: bytes

    def to_json(self) -> str:
        r = self.request
        return json.dumps(
            {
                "last_id": r.last_id,
                "last_hash": r.last_hash.hex(),
                "count": r.count,
                "at": r.at,
                "key": self.fingerprint.hex(),
                "signature": base64.b64encode(self.signature).decode(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, line: str) -> SignedCheckpoint:
        d = json.loads(line)
        return cls(
            CheckpointRequest(
                int(d["last_id"]), bytes.fromhex(d["last_hash"]), int(d["count"]), int(d["at"])
            ),
            bytes.fromhex(d["key"]),
            base64.b64decode(d["signature"], validate=True),
        )

    @classmethod
    def from_result(cls, req: CheckpointRequest, blob: bytes) -> SignedCheckpoint:
        if len(blob) <= FINGERPRINT_SIZE:
            raise SignerError(ErrorKind.INTERNAL, "checkpoint result too short")
        return cls(req, blob[:FINGERPRINT_SIZE], blob[FINGERPRINT_SIZE:])


def read_ledger(path: Path) -> list[SignedCheckpoint]:
    """Every checkpoint in a ledger file, in order; a damaged line raises ValueError."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(SignedCheckpoint.from_json(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path} line {number}: not a checkpoint ({exc})") from None
    return out


class CheckpointLedger:
    """The daemon's last signed checkpoint, and its append-only file."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self.last: CheckpointRequest | None = None
        if self.path.exists():
            entries = read_ledger(self.path)
            self.last = entries[-1].request if entries else None

    def admit(self, req: CheckpointRequest) -> None:
        """Refuse (``profile_violation``) a checkpoint that would go back in history."""
        if abs(req.at - self.clock()) > MAX_SKEW_SECONDS:
            raise SignerError(ErrorKind.PROFILE_VIOLATION, "checkpoint time is not now")
        last = self.last
        if last is None:
            return
        if req.last_id < last.last_id or req.count < last.count:
            raise SignerError(
                ErrorKind.PROFILE_VIOLATION,
                f"checkpoint below the last one signed (id {last.last_id}, count {last.count})",
            )
        if req.last_id == last.last_id and req.last_hash != last.last_hash:
            raise SignerError(ErrorKind.PROFILE_VIOLATION, "checkpoint forks the signed history")
        if req.at < last.at:
            raise SignerError(ErrorKind.PROFILE_VIOLATION, "checkpoint time goes backwards")

    def append(self, signed: SignedCheckpoint) -> None:
        """Record a checkpoint once it is signed: one line, flushed to disk, then remembered."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(signed.to_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.last = signed.request
