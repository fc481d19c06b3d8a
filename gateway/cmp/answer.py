"""Step 6 of a CMP exchange: the answer, protected the way the request was.

A MAC-protected request gets the same secret's MAC with fresh PBM parameters; a signed one
(and any error, when a CMP server certificate is configured) is signed by the CMP server
certificate through ``ResponseSigner``; otherwise the answer goes out unprotected, which
``openssl cmp -unprotected_errors`` accepts for errors found before step 4. If signing
fails, an error still goes out unprotected and a certificate answer becomes systemUnavail:
a certificate is never handed out in an answer the client cannot authenticate.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from cryptography import x509
from pyasn1_alt_modules import rfc5280

from gateway.clock import Clock
from gateway.cmp import messages
from gateway.cmp.exchange import Exchange
from gateway.services.issuers import IssuerRegistry

log = logging.getLogger("gateway.cmp")


class ResponseSigner(Protocol):
    """Signs answers to signature-protected requests with the CMP server certificate."""

    async def certificate(self) -> tuple[rfc5280.AlgorithmIdentifier, bytes]: ...
    async def sign(self, protected_part: bytes) -> bytes: ...


class Answerer:
    """Builds the DER PKIMessage answering one exchange."""

    def __init__(
        self,
        *,
        clock: Clock,
        issuers: IssuerRegistry,
        response_signer: ResponseSigner | None,
    ) -> None:
        self.clock = clock
        self.issuers = issuers
        self.response_signer = response_signer

    def chain(self) -> list[bytes]:
        """The active issuing CA certificate and its parents, for extraCerts / caCerts."""
        out: list[bytes] = []
        issuer = self.issuers.active
        while issuer is not None and len(out) < 4:
            out.append(issuer.der)
            issuer = self.issuers.get(issuer.parent) if issuer.parent else None
        return out

    def _sender_name(self) -> x509.Name:
        issuer = self.issuers.active
        return issuer.certificate.subject if issuer is not None else x509.Name([])

    async def answer(self, ex: Exchange, kind: str, value: Any) -> bytes:
        """The body ``kind``/``value`` as a PKIMessage protected as ``ex`` says."""
        req = ex.request
        now = self.clock()
        implicit = bool(ex.extra.get("implicit_confirm"))
        body = messages.body_of(kind, value)
        extra = self.chain() if kind in ("ip", "cp", "kup") else []
        if ex.secret is not None and ex.pbm is not None:
            pbm = ex.pbm.fresh()
            header = messages.response_header(
                req,
                sender=self._sender_name(),
                protection_alg=pbm.algorithm(),
                sender_kid=req.sender_kid if req else None,
                now=now,
                implicit_confirm=implicit,
            )
            mac = pbm.mac_of(ex.secret, messages.protected_part(header, body))
            return messages.message(header, body, mac, extra)
        if self.response_signer is not None and (ex.signed or kind == "error"):
            try:
                alg, cmp_cert = await self.response_signer.certificate()
                cert = x509.load_der_x509_certificate(cmp_cert)
                header = messages.response_header(
                    req,
                    sender=cert.subject,
                    protection_alg=alg,
                    sender_kid=_key_id(cert),
                    now=now,
                    implicit_confirm=implicit,
                )
                signature = await self.response_signer.sign(messages.protected_part(header, body))
                return messages.message(
                    header,
                    body,
                    signature,
                    [cmp_cert, *self.chain()],
                )
            except Exception as exc:  # an error answer still goes out, unprotected
                log.warning("cmp answer not signed: %s", exc)
                if kind != "error":
                    body = messages.body_of(
                        "error",
                        messages.error_content(
                            "systemUnavail", "the CMP server cannot sign its answer now"
                        ),
                    )
                    extra = []
        header = messages.response_header(
            req,
            sender=self._sender_name(),
            protection_alg=None,
            sender_kid=None,
            now=now,
            implicit_confirm=implicit,
        )
        return messages.message(header, body, None, extra)


def _key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None
