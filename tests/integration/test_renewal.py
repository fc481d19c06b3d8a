"""Renewal with old-key proof, and renewal notices over a real local SMTP server (aiosmtpd).

Certificates here are valid 20 days and the renewal window is 30 days, so every new certificate
is inside its window at once (the signer checks not_before against the real time, so the
gateway clock cannot be moved far ahead for issuance); the injected clock moves to before the
window and past not_after to check the refusals.
"""

from __future__ import annotations

import base64
import email
import secrets
import socket
from collections.abc import Iterator
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509

from gateway import appkeys, terms
from tests.integration import lifecycle
from tests.integration.conftest import active_subscriber
from tests.integration.lifecycle import (
    apply,
    csr_pem,
    new_key,
    old_key_signature,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

# the real CA, signer daemon and gateway configuration of tests/integration/lifecycle.py
ca_config = lifecycle.ca_config
signer = lifecycle.signer
signer_process = lifecycle.signer_process
DAY = 86400


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=default_policy)
        self.messages.append((list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def gateway_config(database_url: str, ca_config: Path, smtp: tuple[Inbox, int]) -> Any:
    import dataclasses

    from config.loader import load
    from config.manifest import manifest_path
    from gateway.config import GatewayConfig, RateLimits

    return dataclasses.replace(
        GatewayConfig(captcha=False, database_url=database_url, ratelimit=RateLimits.off()),
        manifest_path=manifest_path(load(ca_config, environ={})),
        certificate_validity_days=20,
        renewal_window_days=30,
        smtp_host="127.0.0.1",
        smtp_port=smtp[1],
        smtp_from="ca@example.tw",
    )


async def _issued(
    new_client: Any, officer: Any, usage: str = "signing", kind: str = "rsa"
) -> tuple[Any, dict[str, Any], Any, dict[str, Any]]:
    c, slip, _ = await active_subscriber(new_client, officer)
    key = new_key(kind)
    r = await apply(c, usage, csr_pem(key))
    assert r.status == 201, r.text
    return c, slip, key, r.json


async def _challenge(c: Any, cid: int) -> str:
    r = await c.call("GET", f"/api/v1/certificates/{cid}/renewal")
    assert r.status == 200, r.text
    assert len(base64.b64decode(r.json["challenge"])) == 32 and r.json["expires_at"]
    return r.json["challenge"]


async def _renew(c: Any, cid: int, *, challenge: str, csr: str, signature: str) -> Any:
    return await c.call(
        "POST",
        f"/api/v1/certificates/{cid}/renewal",
        {
            "csr": csr,
            "challenge": challenge,
            "signature": signature,
            "terms_version": terms.VERSION,
        },
    )


@pytest.mark.parametrize(("usage", "kind"), [("signing", "rsa"), ("encryption", "p256")])
async def test_renewal_keeps_subject_and_supersedes(
    new_client: Any, officer: Any, db_pool: Any, usage: str, kind: str
) -> None:
    c, slip, old_key, old = await _issued(new_client, officer, usage, kind)
    assert old["status"] == "issued" and old["renewable"] is True
    await c.call("GET", f"/api/v1/certificates/{old['id']}/certificate")
    assert (await c.call("GET", f"/api/v1/certificates/{old['id']}")).json["status"] == "expiring"
    challenge = await _challenge(c, old["id"])
    new_key_ = new_key(kind)
    csr = csr_pem(new_key_)
    r = await _renew(
        c,
        old["id"],
        challenge=challenge,
        csr=csr,
        signature=old_key_signature(old_key, challenge, csr),
    )
    assert r.status == 201, r.text
    new = r.json
    assert new["status"] == "issued" and new["usage"] == usage
    assert new["subject"] == old["subject"] and new["serial"] != old["serial"]
    cert = x509.load_pem_x509_certificate(new["certificate"].encode())
    assert cert.public_key() == new_key_.public_key()
    was = (await c.call("GET", f"/api/v1/certificates/{old['id']}")).json
    assert was["status"] == "superseded" and was["renewable"] is False
    r = await c.call("GET", f"/api/v1/certificates/{old['id']}/renewal")
    assert r.status == 409 and r.json["error"] == "not_renewable"
    async with db_pool.acquire() as conn:
        link = await conn.fetchval("SELECT renewed_from FROM certificates WHERE id = $1", new["id"])
        ev = await conn.fetchrow(
            "SELECT actor, details FROM audit_events WHERE "
            "action = 'certificate_renewed' AND target = $1",
            new["serial"],
        )
    assert link == old["id"]
    assert ev["actor"] == slip["account"] and ev["details"]["renewed_serial"] == old["serial"]


async def test_refused_outside_the_window(new_client: Any, officer: Any, clock: Any) -> None:
    c, slip, key, old = await _issued(new_client, officer)
    challenge = await _challenge(c, old["id"])
    csr = csr_pem(new_key())
    sig = old_key_signature(key, challenge, csr)
    clock.advance(-15 * DAY)  # before the window opens (not_after - 30 days)
    try:
        r = await c.call("GET", f"/api/v1/certificates/{old['id']}/renewal")
        assert r.status == 409 and r.json["error"] == "not_renewable"
        assert (await c.call("GET", f"/api/v1/certificates/{old['id']}")).json["renewable"] is False
    finally:
        clock.advance(15 * DAY)
    clock.advance(21 * DAY)  # expired: register again
    try:
        assert (await c.login(slip["account"], "s3cret-pw")).status == 200  # session timed out
        r = await c.call("GET", f"/api/v1/certificates/{old['id']}/renewal")
        assert r.status == 409 and r.json["error"] == "not_renewable"
        r = await _renew(c, old["id"], challenge=challenge, csr=csr, signature=sig)
        assert r.status == 409 and r.json["error"] == "not_renewable"
        assert (await c.call("GET", f"/api/v1/certificates/{old['id']}")).json[
            "status"
        ] == "expired"
    finally:
        clock.advance(-21 * DAY)


async def test_bad_challenges_and_proofs(new_client: Any, officer: Any, clock: Any) -> None:
    c, _, key, old = await _issued(new_client, officer)
    cid = old["id"]
    csr = csr_pem(new_key())
    # unknown challenge
    fake = base64.b64encode(secrets.token_bytes(32)).decode()
    r = await _renew(c, cid, challenge=fake, csr=csr, signature=old_key_signature(key, fake, csr))
    assert r.status == 400 and r.json["error"] == "bad_challenge"
    r = await _renew(c, cid, challenge="not base64!", csr=csr, signature="AA==")
    assert r.status == 400 and r.json["error"] == "bad_challenge"
    # signed by another key: pop_failed, and the challenge is used up
    ch = await _challenge(c, cid)
    r = await _renew(c, cid, challenge=ch, csr=csr, signature=old_key_signature(new_key(), ch, csr))
    assert r.status == 400 and r.json["error"] == "pop_failed"
    r = await _renew(c, cid, challenge=ch, csr=csr, signature=old_key_signature(key, ch, csr))
    assert r.status == 400 and r.json["error"] == "bad_challenge"
    # the signature must cover challenge ‖ csr_der exactly
    ch = await _challenge(c, cid)
    other = csr_pem(new_key())
    r = await _renew(c, cid, challenge=ch, csr=csr, signature=old_key_signature(key, ch, other))
    assert r.status == 400 and r.json["error"] == "pop_failed"
    # expired challenge
    ch = await _challenge(c, cid)
    clock.advance(301)
    try:
        r = await _renew(c, cid, challenge=ch, csr=csr, signature=old_key_signature(key, ch, csr))
        assert r.status == 400 and r.json["error"] == "bad_challenge"
    finally:
        clock.advance(-301)
    # a challenge of another certificate
    c2, _, _, old2 = await _issued(new_client, officer, "encryption", "p256")
    ch2 = await _challenge(c2, old2["id"])
    ch = await _challenge(c, cid)
    r = await _renew(c, cid, challenge=ch2, csr=csr, signature=old_key_signature(key, ch2, csr))
    assert r.status == 400 and r.json["error"] == "bad_challenge"
    # the same key again
    ch = await _challenge(c, cid)
    same = csr_pem(key)
    r = await _renew(c, cid, challenge=ch, csr=same, signature=old_key_signature(key, ch, same))
    assert r.status == 400 and r.json["error"] == "key_reuse"
    # then the CSR checks of applying: a weak key
    weak = (Path(__file__).resolve().parents[1] / "testdata" / "csr" / "rsa1024.pem").read_text()
    ch = await _challenge(c, cid)
    r = await _renew(c, cid, challenge=ch, csr=weak, signature=old_key_signature(key, ch, weak))
    assert r.status == 400 and r.json["error"] == "weak_key"
    # someone else's certificate
    r = await c2.call("GET", f"/api/v1/certificates/{cid}/renewal")
    assert r.status == 404
    # after all that, a correct attempt still works
    ch = await _challenge(c, cid)
    r = await _renew(c, cid, challenge=ch, csr=csr, signature=old_key_signature(key, ch, csr))
    assert r.status == 201, r.text


async def test_notice_sent_once(
    new_client: Any, officer: Any, server: Any, smtp: tuple[Inbox, int], db_pool: Any
) -> None:
    inbox, _ = smtp
    c, slip, _, old = await _issued(new_client, officer)
    email_to = (await c.call("GET", "/api/v1/me")).json["email"]
    notices = server.app[appkeys.NOTICES]
    await notices.run_once()
    mine = [m for rcpt, m in inbox.messages if rcpt == [email_to]]
    assert len(mine) == 1
    body = mine[0].get_content()
    assert old["serial"] in body and slip["account"] in body
    assert mine[0]["From"] == "ca@example.tw"
    assert await notices.run_once() == 0  # once per certificate
    assert len([m for rcpt, m in inbox.messages if rcpt == [email_to]]) == 1
    async with db_pool.acquire() as conn:
        sent = await conn.fetchval(
            "SELECT sent_at FROM renewal_notices WHERE certificate_id = $1", old["id"]
        )
    assert sent is not None
