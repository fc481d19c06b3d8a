"""Regenerate the CSR fixtures in tests/testdata/csr/ (kept as files so tests read real bytes).

Run: .venv/bin/python tests/testdata/make_csrs.py
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc2986

OUT = Path(__file__).resolve().parent / "csr"
PEM = serialization.Encoding.PEM


SHA256 = hashes.SHA256()


def csr(key, algorithm=SHA256) -> x509.CertificateSigningRequest:  # type: ignore[no-untyped-def]
    name = x509.Name(
        [x509.NameAttribute(x509.NameOID.COMMON_NAME, "ignored: the CA uses the RA data")]
    )
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, algorithm)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    files = {
        "good-rsa2048.pem": csr(rsa.generate_private_key(65537, 2048)),
        "good-p256.pem": csr(ec.generate_private_key(ec.SECP256R1())),
        "good-p384.pem": csr(ec.generate_private_key(ec.SECP384R1()), hashes.SHA384()),
        "rsa1024.pem": csr(rsa.generate_private_key(65537, 1024)),
        "rsa-e3.pem": csr(rsa.generate_private_key(3, 2048)),
        "p521.pem": csr(ec.generate_private_key(ec.SECP521R1()), hashes.SHA512()),
        "secp256k1.pem": csr(ec.generate_private_key(ec.SECP256K1())),
        "ed25519.pem": csr(ed25519.Ed25519PrivateKey.generate(), None),
        "dsa2048.pem": csr(dsa.generate_private_key(2048)),
    }
    for name, req in files.items():
        (OUT / name).write_bytes(req.public_bytes(PEM))
    # a valid request whose signature was damaged: the last byte of the DER is in the signature
    der = bytearray(files["good-rsa2048.pem"].public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    bad = x509.load_der_x509_csr(bytes(der))
    (OUT / "wrong-signature.pem").write_bytes(bad.public_bytes(PEM))
    (OUT / "garbage.pem").write_text(
        "-----BEGIN CERTIFICATE REQUEST-----\n"
        "bm90IGEgY3NyIGF0IGFsbA==\n"
        "-----END CERTIFICATE REQUEST-----\n"
    )
    text = files["good-p256.pem"].public_bytes(PEM).decode()
    (OUT / "truncated.pem").write_text(
        text[: len(text) // 2] + "\n-----END CERTIFICATE REQUEST-----\n"
    )
    for name, args in OPENSSL_KEYS.items():
        (OUT / f"{name}.pem").write_bytes(openssl_csr(args))
    (OUT / "unknown-key-oid.pem").write_bytes(
        with_key_algorithm(
            files["good-p256.pem"].public_bytes(serialization.Encoding.DER), UNKNOWN_OID
        )
    )


# keys on curves cryptography cannot load (UnsupportedAlgorithm from public_key()): made by
# openssl, which implements them
OPENSSL_KEYS = {
    "ec-prime239v1": ["ecparam", "-name", "prime239v1", "-genkey", "-noout"],
    "ec-secp112r1": ["ecparam", "-name", "secp112r1", "-genkey", "-noout"],
    "sm2": ["genpkey", "-algorithm", "SM2"],
}
UNKNOWN_OID = "1.3.6.1.4.1.55555.1.1"  # a private-enterprise arc no key algorithm uses


def openssl_csr(keygen: list[str]) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "key.pem"
        subprocess.run(["openssl", *keygen, "-out", str(key)], check=True, capture_output=True)
        extra = ["-sm3"] if "SM2" in keygen else []
        return subprocess.run(
            ["openssl", "req", "-new", "-key", str(key), "-subj", "/CN=ignored", *extra],
            check=True,
            capture_output=True,
        ).stdout


def with_key_algorithm(csr_der: bytes, oid: str) -> bytes:
    """The request with its SubjectPublicKeyInfo algorithm replaced (pyasn1 re-encodes it; the
    signature no longer verifies, but the key is looked at first)."""
    req, _ = der_decoder.decode(csr_der, asn1Spec=rfc2986.CertificationRequest())
    req["certificationRequestInfo"]["subjectPKInfo"]["algorithm"]["algorithm"] = (
        univ.ObjectIdentifier(oid)
    )
    der = der_encoder.encode(req)
    return x509.load_der_x509_csr(der).public_bytes(PEM)


if __name__ == "__main__":
    main()
