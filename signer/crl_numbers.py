"""CRL numbers strictly increasing per issuer, across restarts: the signer's own record.

RFC 5280 5.2.3: a CRL number is monotonically increasing for a given issuer. The gateway takes
its numbers from the database; a compromised gateway (or a restored old database) could ask
for a number already used, to have a CRL signed that replaces a later one in relying parties'
caches. The daemon therefore keeps the last number it signed per issuer in its state folder
(``[signer] state_dir``/``crl-numbers.json``) and refuses an equal or lower one
(``crl_number_not_increasing``).

A number is *reserved* before the CRL is signed, and stays used when the signing then fails:
the gateway allocates a fresh number for each attempt anyway, and a crash between signing and
recording can never let the same number be signed twice. The file is rewritten atomically
(temporary file, fsync, rename) under an exclusive ``flock`` on ``crl-numbers.lock``, so
several daemons sharing a state folder stay consistent too.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from signer.errors import ErrorKind, SignerError

FILE = "crl-numbers.json"
LOCK = "crl-numbers.lock"


class CrlNumbers:
    """The last CRL number signed per issuer, in ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / FILE
        self.lock_path = self.dir / LOCK
        self.last()  # a damaged file stops the start: it must not silently begin afresh

    def last(self) -> dict[str, int]:
        """Issuer name -> last CRL number reserved. Raises ValueError on a damaged file."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: unreadable ({exc})") from None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in data.items()
        ):
            raise ValueError(f"{self.path}: expected {{issuer: number}}")
        return data

    def reserve(self, issuer: str, number: int) -> None:
        """Record ``number`` as ``issuer``'s latest, or refuse it when it is not above the last
        one. Blocking (a few file operations and an fsync): CRLs are rare."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                numbers = self.last()
            except ValueError as exc:
                raise SignerError(ErrorKind.INTERNAL, str(exc)) from None
            last = numbers.get(issuer)
            if last is not None and number <= last:
                raise SignerError(
                    ErrorKind.CRL_NUMBER_NOT_INCREASING,
                    f"CRL number {number} of {issuer} is not above {last}, the last one signed",
                )
            numbers[issuer] = number
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(numbers, fh, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        finally:
            os.close(fd)  # releases the lock
