"""Error vocabulary, password policy, generated names, certificate status, audit hashing,
and the seam: the gateway never loads pkcs11."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from db.audit import GENESIS, row_hash
from db.queries.certificates import CertificateRow
from gateway.errors import HTTP_STATUS, ApiError, Kind
from gateway.services.cert_status import status
from gateway.services.passwords import Passwords, generate_account_name


def test_every_kind_has_a_status() -> None:
    assert set(HTTP_STATUS) == set(Kind)
    e = ApiError(Kind.ACCOUNT_LOCKED, "locked")
    assert e.status == 423 and e.body() == {"error": "account_locked", "message": "locked"}


def test_password_policy_counts_characters() -> None:
    p = Passwords(minimum=6, maximum=16)
    p.check_policy("密碼很安全喔")
    p.check_policy("x" * 16)
    for bad in ("12345", "x" * 17, ""):
        with pytest.raises(ApiError) as info:
            p.check_policy(bad)
        assert info.value.kind is Kind.PASSWORD_POLICY
    with pytest.raises(ApiError):
        p.check_policy("same-one", "same-one")


def test_generated_secrets() -> None:
    p = Passwords(minimum=6, maximum=16)
    pws = {p.generate() for _ in range(50)}
    assert len(pws) == 50 and all(10 <= len(x) <= 12 for x in pws)
    names = {generate_account_name() for _ in range(50)}
    assert len(names) == 50 and all(n[0].isalpha() and n.islower() for n in names)


def _row(**over: object) -> CertificateRow:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    base: dict[str, object] = dict(
        id=1,
        serial="1f" * 8,
        usage="signing",
        status="issued",
        subject="CN=x",
        issuer_subject="CN=ca",
        der=b"",
        not_before=now - timedelta(days=300),
        not_after=now + timedelta(days=65),
        downloaded_at=now,
        superseded_by=None,
        revoked_at=None,
    )
    base.update(over)
    return CertificateRow(**base)  # type: ignore[arg-type]


def test_certificate_status_order() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    w = timedelta(days=30)
    assert status(_row(), now, w) == ("valid", False)
    assert status(_row(not_after=now + timedelta(days=10)), now, w) == ("expiring", True)
    assert status(_row(downloaded_at=None), now, w) == ("issued", False)
    assert status(_row(not_after=now), now, w) == ("expired", False)
    assert status(_row(superseded_by=2, revoked_at=None), now, w) == ("superseded", False)
    assert status(_row(superseded_by=2, revoked_at=now), now, w) == ("revoked", False)


def test_audit_hash_is_canonical() -> None:
    at = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    a = row_hash(
        id=1,
        at=at,
        actor="a",
        action="x",
        target="t",
        details={"b": 1, "a": "中"},
        prev_hash=GENESIS,
    )
    b = row_hash(
        id=1,
        at=at,
        actor="a",
        action="x",
        target="t",
        details={"a": "中", "b": 1},
        prev_hash=GENESIS,
    )
    assert a == b and len(a) == 32
    assert a != row_hash(
        id=1,
        at=at,
        actor="a",
        action="x",
        target="t",
        details={"a": "中", "b": 2},
        prev_hash=GENESIS,
    )
    assert a != row_hash(
        id=1,
        at=at,
        actor="a",
        action="x",
        target="t",
        details={"a": "中", "b": 1},
        prev_hash=b"\x01" * 32,
    )


def test_audit_hash_is_the_documented_sha256_of_the_whole_row() -> None:
    """The hash is built from parts around the id (the database completes it for batches of
    issued certificates); it must stay SHA-256(canonical JSON of the whole row + prev)."""
    at = datetime(2026, 1, 1, 12, 0, 0, 5, tzinfo=UTC)
    details = {"id": 7, "target": "x", "z": [1, {"b": None, "a": '\u2028"'}], "中": True}
    for row_id in (1, 9, 10, 123456789012):
        whole = orjson.dumps(
            {
                "id": row_id,
                "at": "2026-01-01T12:00:00.000005Z",
                "actor": "王",
                "action": "certificate_issued",
                "target": 'a"b',
                "details": details,
            },
            option=orjson.OPT_SORT_KEYS,
        )
        assert (
            row_hash(
                id=row_id,
                at=at,
                actor="王",
                action="certificate_issued",
                target='a"b',
                details=details,
                prev_hash=b"\x07" * 32,
            )
            == hashlib.sha256(whole + b"\x07" * 32).digest()
        )


def test_gateway_never_imports_pkcs11() -> None:
    # signer.checkpoints: the token-free half of audit checkpoints (format, verification);
    # signer.role_keys: which key signs checkpoints and where its public key is (ca-admin);
    # signer.codec: the wire framing; signer.vocabulary: the terms both sides share
    code = (
        "import sys, gateway.app, gateway.cli, admin.cli; "
        "bad = [m for m in sys.modules if m == 'pkcs11' or m.startswith('pkcs11.') "
        "or (m.startswith('signer.') and m not in "
        "('signer.protocol', 'signer.client', 'signer.errors', 'signer.checkpoints', "
        "'signer.role_keys', 'signer.codec', 'signer.vocabulary'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_captcha_alphabet_and_image() -> None:
    """No glyph that reads as another; drawn at the size shown; dark ink on white."""
    import io

    from PIL import Image

    from gateway import captcha

    for pair in captcha.CONFUSABLE:
        assert not set(pair) & set(captcha.ALPHABET), pair
    assert all(set(captcha.new_answer()) <= set(captcha.ALPHABET) for _ in range(100))
    service = captcha.CaptchaService(ttl_seconds=60, clock=lambda: None, pepper=None)  # type: ignore[arg-type]
    for _ in range(5):
        image = Image.open(io.BytesIO(service._png("ACDEF"))).convert("L")
        assert image.size == (captcha.WIDTH, captcha.HEIGHT)
        values = sorted(image.tobytes())  # mode L: one byte per pixel
        ink = values[len(values) // 100]  # the darkest 1 %: the strokes

        def lum(v: int) -> float:
            c = v / 255
            return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

        assert (lum(values[-1]) + 0.05) / (lum(ink) + 0.05) >= 7, ink


def test_every_error_code_has_both_texts() -> None:
    """Each code of the gateway's closed set has its own zh-TW and English message, handed to
    the browser code, and the Chinese one is Chinese."""
    import re

    from gateway.errors import Kind
    from gateway.portal import i18n

    for kind in Kind:
        key = f"err_{kind.value}"
        assert key in i18n.ZH and key in i18n.EN and key in i18n.JS_KEYS, key
        assert re.search(r"[\u4e00-\u9fff]", i18n.ZH[key]), key
        assert i18n.ZH[key] != i18n.EN[key]


def test_terms_name_the_configured_renewal_window() -> None:
    from gateway import terms

    text = terms.text(14)
    assert "14 日內可線上展期" in text and "during the 14 days" in text and "30" not in text
