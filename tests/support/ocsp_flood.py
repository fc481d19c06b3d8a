"""An OCSP flood, run as its own process so its clients do not share the gateway's event loop:
``clients`` connections that each, for ``seconds``, send as fast as the answers come back
(after ``pause`` seconds) alternately a request with a fresh random nonce for one of the known
serials and a request for a fresh random serial this CA never issued.

Prints one JSON object: how many answers of each kind came back and how many were errors (not
HTTP 200 with a parsable OCSP response that is ``successful`` or ``tryLater``, or a successful
answer for another serial, or a nonce echoed that is not the one sent).

    python -m tests.support.ocsp_flood URL ISSUER_CERT_PEM SERIALS_FILE SECONDS CLIENTS PAUSE
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

SHA1 = hashes.SHA1()


def cert_id_hashes(issuer: x509.Certificate) -> tuple[bytes, bytes]:
    name = hashes.Hash(SHA1)
    name.update(issuer.subject.public_bytes())
    key = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
    return name.finalize(), key


def request(hashes_: tuple[bytes, bytes], serial: int, nonce: bytes | None) -> bytes:
    b = ocsp.OCSPRequestBuilder().add_certificate_by_hash(hashes_[0], hashes_[1], serial, SHA1)
    if nonce is not None:
        b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
    return b.build().public_bytes(serialization.Encoding.DER)


async def flood(
    url: str,
    issuer: x509.Certificate,
    serials: list[int],
    seconds: float,
    clients: int,
    pause: float,
) -> dict[str, object]:
    ids = cert_id_hashes(issuer)
    counts: Counter[str] = Counter()
    end = time.monotonic() + seconds

    async def one(http: aiohttp.ClientSession, n: int) -> None:
        turn = n
        while time.monotonic() < end:
            turn += 1
            nonce = secrets.token_bytes(16) if turn % 2 else None
            serial = secrets.choice(serials) if nonce else secrets.randbits(120) | 1 << 119
            try:
                async with http.post(
                    url,
                    data=request(ids, serial, nonce),
                    headers={"Content-Type": "application/ocsp-request"},
                ) as r:
                    body = await r.read()
                    status = r.status
            except aiohttp.ClientError:
                counts["error"] += 1
                continue
            counts[classify(status, body, serial, nonce)] += 1
            if pause:
                await asyncio.sleep(pause)

    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn) as http:
        await asyncio.gather(*(one(http, n) for n in range(clients)))
    out: dict[str, object] = dict(counts)
    out["sent"] = sum(counts.values())
    return out


def classify(status: int, body: bytes, serial: int, nonce: bytes | None) -> str:
    if status != 200:
        return "error"
    try:
        resp = ocsp.load_der_ocsp_response(body)
    except ValueError:
        return "error"
    if resp.response_status == ocsp.OCSPResponseStatus.TRY_LATER:
        return "try_later"
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL or resp.serial_number != serial:
        return "error"
    try:
        echoed = resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        echoed = None
    if nonce is None:
        if echoed is not None:
            return "error"
        return "unknown" if resp.certificate_status == ocsp.OCSPCertStatus.UNKNOWN else "error"
    if echoed is None:
        return "nonce_dropped"  # the stored answer, over the budget (RFC 8954)
    return "nonce_echoed" if echoed == nonce else "error"


def main(argv: list[str]) -> int:
    url, issuer_pem, serials_file, seconds, clients, pause = argv
    issuer = x509.load_pem_x509_certificate(Path(issuer_pem).read_bytes())
    serials = [int(s, 16) for s in Path(serials_file).read_text().split()]
    result = asyncio.run(flood(url, issuer, serials, float(seconds), int(clients), float(pause)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
