"""CSR intake: the fixture files get exactly the API's error codes."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.csr import CsrError, parse_csr

CSR_DIR = Path(__file__).resolve().parents[1] / "testdata" / "csr"


@pytest.mark.parametrize("name", ["good-rsa2048.pem", "good-p256.pem", "good-p384.pem"])
def test_good_requests_give_their_public_key(name: str) -> None:
    text = (CSR_DIR / name).read_text()
    checked = parse_csr(text)
    req = x509.load_pem_x509_csr(text.encode())
    assert checked.public_key == req.public_key()
    assert serialization.load_der_public_key(checked.spki) == req.public_key()
    assert checked.der == req.public_bytes(serialization.Encoding.DER)


def test_base64_der_is_accepted_too() -> None:
    text = (CSR_DIR / "good-p256.pem").read_text()
    der = x509.load_pem_x509_csr(text.encode()).public_bytes(serialization.Encoding.DER)
    assert parse_csr(base64.b64encode(der).decode()).der == der


@pytest.mark.parametrize(
    "name, code",
    [
        ("garbage.pem", "bad_csr"),
        ("truncated.pem", "bad_csr"),
        ("wrong-signature.pem", "pop_failed"),
        ("rsa1024.pem", "weak_key"),
        ("rsa-e3.pem", "weak_key"),
        ("p521.pem", "weak_key"),
        ("secp256k1.pem", "weak_key"),
        ("ed25519.pem", "weak_key"),
        ("dsa2048.pem", "weak_key"),
    ],
)
def test_bad_requests_get_the_api_error_code(name: str, code: str) -> None:
    with pytest.raises(CsrError) as err:
        parse_csr((CSR_DIR / name).read_text())
    assert err.value.code == code


@pytest.mark.parametrize(
    "value", [None, 5, "", "   ", "A" * 20000, "!!!not base64!!!", "\u4e2d\u6587"]
)
def test_non_requests_are_bad_csr(value: object) -> None:
    with pytest.raises(CsrError) as err:
        parse_csr(value)
    assert err.value.code == "bad_csr"


def _huge_exponent_csr_with_a_broken_signature() -> str:
    """An RSA-2048 key whose public exponent has 2,047 bits, so that verifying its signature
    costs a full private-size exponentiation, and a signature that does not verify."""
    base = rsa.generate_private_key(65537, 2048).private_numbers()
    p, q = base.p, base.q
    phi = (p - 1) * (q - 1)
    e = (1 << 2046) + 1
    while math.gcd(e, phi) != 1:
        e += 2
    d = pow(e, -1, phi)
    key = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, p * q),
    ).private_key()
    der = bytearray(
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "huge e")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    der[-1] ^= 0x01  # the last byte belongs to the signature
    return base64.b64encode(bytes(der)).decode()


def test_the_key_is_judged_before_its_signature_is_verified() -> None:
    with pytest.raises(CsrError) as err:
        parse_csr(_huge_exponent_csr_with_a_broken_signature())
    assert err.value.code == "weak_key"  # not pop_failed: the verification never ran
