"""Regenerate the CSR fixtures in tests/testdata/csr/ (kept as files so tests read real bytes).

Run: .venv/bin/python tests/testdata/make_csrs.py
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

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


if __name__ == "__main__":
    main()
