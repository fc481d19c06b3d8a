"""TLS for the signer RPC over TCP, the server's half: its context and its pinned client
identities (the gateway's half, ``ClientTls``, lives in ``signer/client.py``).

Chaining to the client CA only says that the CA issued the certificate; a transport CA usually
issues more than one client (other services, an operator's test client). So the signer also
pins who may ask for signatures: a connection is served only when the client certificate's
SHA-256 fingerprint or its exact subject is in ``[signer] tls_allowed_clients``. Python's ``ssl``
offers no verification callback, so the pin is checked right after the handshake, before the
first frame is read.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from config.loader import ConfigError

FINGERPRINT_PREFIX = "sha256:"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def fingerprint(der: bytes) -> str:
    """The certificate's SHA-256 fingerprint as written in the config: ``sha256:<64 hex>``."""
    return FINGERPRINT_PREFIX + hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class ClientPins:
    """The client identities the signer serves: fingerprints and exact subjects."""

    fingerprints: frozenset[str]
    subjects: tuple[x509.Name, ...]

    @classmethod
    def parse(cls, entries: Iterable[str], where: str) -> ClientPins:
        """``sha256:<hex>`` (colons allowed, any case) is a fingerprint; anything else must be
        an RFC 4514 subject (``CN=gateway,O=Example``), matched attribute for attribute."""
        prints: set[str] = set()
        subjects: list[x509.Name] = []
        for raw in entries:
            entry = raw.strip()
            if entry.lower().startswith(FINGERPRINT_PREFIX):
                digest = entry[len(FINGERPRINT_PREFIX) :].replace(":", "").lower()
                if not _HEX64.match(digest):
                    raise ConfigError(f"{where}: {entry!r} is not a SHA-256 fingerprint")
                prints.add(FINGERPRINT_PREFIX + digest)
                continue
            try:
                name = x509.Name.from_rfc4514_string(entry)
            except ValueError as exc:
                raise ConfigError(
                    f"{where}: {entry!r} is neither sha256:<fingerprint> nor an RFC 4514 subject"
                ) from exc
            if not len(name):
                raise ConfigError(f"{where}: an empty subject would match nothing useful")
            subjects.append(name)
        if not prints and not subjects:
            raise ConfigError(f"{where}: list at least one client fingerprint or subject")
        return cls(frozenset(prints), tuple(subjects))

    def admits(self, der: bytes) -> bool:
        """True when the certificate (DER, already verified by the handshake) is pinned."""
        if fingerprint(der) in self.fingerprints:
            return True
        if not self.subjects:
            return False
        try:
            subject = x509.load_der_x509_certificate(der).subject
        except ValueError:  # OpenSSL accepted it, cryptography does not: not a pinned subject
            return False
        return any(subject == pinned for pinned in self.subjects)


def server_context(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    """The signer's side: TLS 1.2 or later, a client certificate chaining to ``client_ca``
    required. Which of those clients is served is decided by ``ClientPins``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
