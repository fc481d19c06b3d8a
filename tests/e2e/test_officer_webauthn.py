"""An RA officer's WebAuthn second factor in Chromium, with the DevTools protocol's virtual
authenticator (``WebAuthn.addVirtualAuthenticator``) standing in for a security key.

The officer enrols the key on /ra/factors, logs out, and logs in again: the password leads to
/ra/verify, the key completes the login. Then, driving the same ceremony from page code: a
tampered signature, a missing or empty assertion and an assertion for another challenge are
refused; a challenge is single use (re-posting an assertion, whether its first use failed or
succeeded, is refused); a signature counter that does not grow is refused. The operator page
sends a pending officer through /ra/verify and back. A second gateway with
``officer_second_factor = "required"`` has a new officer enrol a TOTP app in the browser.

The gateway runs with ``public_url = http://localhost:<port>`` (WebAuthn binds credentials to
a host name; an IP address cannot be a relying party id) and the browser uses that URL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pyotp
import pytest

from tests.e2e.conftest import BIN, _gateway

PASSWORD = "officer-webauthn-pw"

# In-page helpers: the API with the page's session and CSRF token, and the WebAuthn
# ceremony with base64url conversion (the same JSON form as web/src/ra_factors.js sends).
HELPERS = """
window.t2fa = {
  async post(path, body) {
    const headers = { "Content-Type": "application/json",
                      "X-CSRF-Token": sessionStorage.getItem("ca.ra.csrf") || "" };
    const r = await fetch(path, { method: "POST", headers, credentials: "same-origin",
                                  body: body === undefined ? undefined : JSON.stringify(body) });
    let json = null;
    try { json = await r.json(); } catch (e) {}
    if (r.ok && json && json.csrf_token) sessionStorage.setItem("ca.ra.csrf", json.csrf_token);
    return { status: r.status, body: json };
  },
  dec(s) {
    const b = s.replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(b + "=".repeat((4 - b.length % 4) % 4)), c => c.charCodeAt(0));
  },
  enc(buf) {
    let s = ""; for (const x of new Uint8Array(buf)) s += String.fromCharCode(x);
    return btoa(s).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  },
  // a fresh challenge and the authenticator's assertion for it, not yet sent
  async assertion() {
    const o = await this.post("/api/v1/ra/session/webauthn-options");
    if (o.status !== 200) return { status: o.status, body: o.body };
    const opts = o.body.options;
    const cred = await navigator.credentials.get({ publicKey: { ...opts,
      challenge: this.dec(opts.challenge),
      allowCredentials: opts.allowCredentials.map(c => ({ ...c, id: this.dec(c.id) })) } });
    const r = cred.response;
    return { challenge_id: o.body.challenge_id, credential: { id: cred.id,
      rawId: this.enc(cred.rawId), type: cred.type, clientExtensionResults: {},
      response: { clientDataJSON: this.enc(r.clientDataJSON),
                  authenticatorData: this.enc(r.authenticatorData),
                  signature: this.enc(r.signature),
                  userHandle: r.userHandle ? this.enc(r.userHandle) : undefined } } };
  },
  tamper(credential) {
    const sig = this.dec(credential.response.signature);
    sig[sig.length - 1] ^= 0x01;
    return { ...credential, response: { ...credential.response, signature: this.enc(sig) } };
  },
};
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gateway(stack: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A gateway on the stack's database and signer whose public URL names localhost."""
    port = _free_port()
    env = {**stack["env"], "CA_GATEWAY_PUBLIC_URL": f"http://localhost:{port}"}
    with _gateway(stack["config"], env, port, stack["tmp"] / "gateway-webauthn.log"):
        yield {
            "base": f"http://localhost:{port}",
            "env": env,
            "admin_dsn": stack["admin_env"]["DATABASE_URL"],
        }


@pytest.fixture(scope="module")
def officer(gateway: dict[str, Any], stack: dict[str, Any]) -> str:
    """A new officer, created with ``ca-admin create-officer`` (password on stdin)."""
    login = f"ra-wa-{secrets.token_hex(3)}"
    subprocess.run(
        [str(BIN / "ca-admin"), "create-officer", login],
        input=PASSWORD + "\n",
        text=True,
        env=stack["admin_env"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return login


def _sql(gateway: dict[str, Any], query: str, *args: Any) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(gateway["admin_dsn"])  # the owner: the test looks behind
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    # Playwright's sync API keeps an event loop in this thread: run the query in another
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result(timeout=60)


@pytest.fixture(scope="module")
def page(gateway: dict[str, Any], browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(base_url=gateway["base"], locale="en")
    pg = ctx.new_page()
    cdp = ctx.new_cdp_session(pg)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": False,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    pg.cdp = cdp  # type: ignore[attr-defined]
    pg.authenticator = added["authenticatorId"]  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        ctx.close()


def _ready(page: Any, url_glob: str) -> None:
    page.wait_for_url(url_glob, timeout=20000)
    page.wait_for_selector("body[data-ready='1']", timeout=20000)


def _password_login(page: Any, login: str) -> None:
    page.goto("/ra/")
    page.wait_for_selector("body[data-ready='1']")
    page.fill("#ra-login", login)
    page.fill("#ra-password", PASSWORD)
    page.click("#ra-login-submit")


def _js(page: Any, code: str) -> Any:
    page.evaluate(HELPERS)
    return page.evaluate(code)


def test_enrol_a_key_and_log_in_with_it(page: Any, officer: str, gateway: dict[str, Any]) -> None:
    _password_login(page, officer)
    _ready(page, "**/ra/register")  # no factor yet, policy optional: the password suffices
    page.goto("/ra/factors")
    page.wait_for_selector("body[data-ready='1']")
    assert page.is_visible("#f-none")
    page.fill("#f-name", "virtual key")
    page.click("#f-add-webauthn")
    page.wait_for_selector("#f-table tbody tr[data-kind='webauthn']", timeout=30000)
    assert "virtual key" in page.inner_text("#f-table")
    creds = page.cdp.send("WebAuthn.getCredentials", {"authenticatorId": page.authenticator})[
        "credentials"
    ]
    assert len(creds) == 1 and creds[0]["rpId"] == "localhost"
    rows = _sql(
        gateway,
        "SELECT f.kind, f.sign_count FROM officer_factors f JOIN ra_officers o "
        "ON o.id = f.officer_id WHERE o.login = $1",
        officer,
    )
    assert [r["kind"] for r in rows] == ["webauthn"]

    page.click("#logout")
    _ready(page, "**/ra/")
    _password_login(page, officer)
    _ready(page, "**/ra/verify")
    # the RA pages refuse the half-logged-in session and send it back here
    page.goto("/ra/subscribers")
    _ready(page, "**/ra/verify")
    page.click("#f-webauthn-login")
    _ready(page, "**/ra/register")
    page.goto("/ra/subscribers")
    _ready(page, "**/ra/subscribers")
    assert not page.is_visible("#msg.error")
    rows = _sql(
        gateway,
        "SELECT f.sign_count, f.last_used_at FROM officer_factors f JOIN "
        "ra_officers o ON o.id = f.officer_id WHERE o.login = $1",
        officer,
    )
    assert rows[0]["last_used_at"] is not None
    creds = page.cdp.send("WebAuthn.getCredentials", {"authenticatorId": page.authenticator})[
        "credentials"
    ]
    assert rows[0]["sign_count"] == creds[0]["signCount"] > 0
    actions = [
        r["action"]
        for r in _sql(
            gateway, "SELECT action FROM audit_events WHERE target = $1 ORDER BY id", officer
        )
    ]
    assert "officer_factor_enrolled" in actions and "officer_second_factor_succeeded" in actions


def test_wrong_and_missing_assertions_are_refused(page: Any, officer: str) -> None:
    page.click("#logout")
    _ready(page, "**/ra/")
    _password_login(page, officer)
    _ready(page, "**/ra/verify")
    result = _js(
        page,
        """async () => {
      const out = {};
      let a = await t2fa.assertion();
      out.tampered = await t2fa.post("/api/v1/ra/session/second-factor",
        { challenge_id: a.challenge_id, credential: t2fa.tamper(a.credential) });
      // the challenge was used up by the failed attempt: the genuine assertion is refused too
      out.genuine_after = await t2fa.post("/api/v1/ra/session/second-factor", a);
      const b = await t2fa.assertion();
      out.missing = await t2fa.post("/api/v1/ra/session/second-factor",
        { challenge_id: b.challenge_id });
      out.empty = await t2fa.post("/api/v1/ra/session/second-factor",
        { challenge_id: b.challenge_id, credential: {} });
      // an assertion answers one challenge only: a's signed data under a fresh challenge id
      const c = await t2fa.post("/api/v1/ra/session/webauthn-options");
      out.other_challenge = await t2fa.post("/api/v1/ra/session/second-factor",
        { challenge_id: c.body.challenge_id, credential: a.credential });
      out.ra_api = (await fetch("/api/v1/ra/subscribers")).status;
      return out;
    }""",
    )
    status = {
        k: (v["status"], v["body"]["error"]) if isinstance(v, dict) else v
        for k, v in result.items()
    }
    assert status == {
        "tampered": (401, "second_factor_failed"),
        "genuine_after": (400, "bad_challenge"),
        "missing": (400, "invalid_field"),
        "empty": (401, "second_factor_failed"),
        "other_challenge": (401, "second_factor_failed"),
        "ra_api": 403,  # still only half logged in
    }, status


def test_a_replayed_assertion_is_refused(page: Any, officer: str) -> None:
    """The genuine assertion logs in once; re-posted in the next login it is refused."""
    page.click("#logout")
    _ready(page, "**/ra/")
    _password_login(page, officer)
    _ready(page, "**/ra/verify")
    first = _js(
        page,
        """async () => {
      const a = await t2fa.assertion();
      const ok = await t2fa.post("/api/v1/ra/session/second-factor", a);
      return { a, ok: ok.status };
    }""",
    )
    assert first["ok"] == 200
    page.goto("/ra/subscribers")
    _ready(page, "**/ra/subscribers")
    page.click("#logout")
    _ready(page, "**/ra/")
    _password_login(page, officer)
    _ready(page, "**/ra/verify")
    page.evaluate(HELPERS)
    replay = page.evaluate(
        "async (a) => t2fa.post('/api/v1/ra/session/second-factor', a)", first["a"]
    )
    assert (replay["status"], replay["body"]["error"]) == (400, "bad_challenge")
    fresh = page.evaluate(
        """async (a) => {
      const o = await t2fa.post("/api/v1/ra/session/webauthn-options");
      return t2fa.post("/api/v1/ra/session/second-factor",
                       { challenge_id: o.body.challenge_id, credential: a.credential });
    }""",
        first["a"],
    )
    assert (fresh["status"], fresh["body"]["error"]) == (401, "second_factor_failed")


def test_a_counter_that_does_not_grow_is_refused(
    page: Any, officer: str, gateway: dict[str, Any]
) -> None:
    """A cloned authenticator shows as a signature counter at or below the stored one."""
    page.goto("/ra/verify")
    page.wait_for_selector("body[data-ready='1']")
    _sql(
        gateway,
        "UPDATE officer_factors SET sign_count = sign_count + 1000 WHERE officer_id = "
        "(SELECT id FROM ra_officers WHERE login = $1)",
        officer,
    )
    try:
        r = _js(
            page,
            """async () => {
          const a = await t2fa.assertion();
          return t2fa.post("/api/v1/ra/session/second-factor", a);
        }""",
        )
        assert (r["status"], r["body"]["error"]) == (401, "second_factor_failed")
    finally:
        _sql(
            gateway,
            "UPDATE officer_factors SET sign_count = sign_count - 1000 WHERE "
            "officer_id = (SELECT id FROM ra_officers WHERE login = $1)",
            officer,
        )
    page.click("#f-webauthn-login")
    _ready(page, "**/ra/register")
    failed = _sql(
        gateway,
        "SELECT details->>'reason' AS reason FROM audit_events WHERE "
        "action = 'officer_second_factor_failed' AND target = $1 ORDER BY id",
        officer,
    )
    assert {"bad_assertion", "bad_challenge", "malformed_assertion"} <= {
        r["reason"] for r in failed
    }


def test_the_operator_page_sends_the_second_factor_to_ra_verify_and_back(
    page: Any, officer: str
) -> None:
    page.click("#logout")
    _ready(page, "**/ra/")
    page.goto("/operator/")
    page.wait_for_selector("#login:not([hidden])", timeout=20000)
    page.fill("#login input[name=login]", officer)
    page.fill("#login input[name=password]", PASSWORD)
    page.click("#login button[type=submit]")
    _ready(page, "**/ra/verify?next=/operator/")
    page.click("#f-webauthn-login")
    page.wait_for_url("**/operator/", timeout=20000)
    page.wait_for_selector("#board:not([hidden])", timeout=20000)


@pytest.fixture(scope="module")
def required_gateway(stack: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A second gateway on the same database with ``officer_second_factor = "required"``."""
    port = _free_port()
    env = {
        **stack["env"],
        "CA_GATEWAY_PUBLIC_URL": f"http://localhost:{port}",
        "CA_GATEWAY_OFFICER_SECOND_FACTOR": "required",
    }
    with _gateway(stack["config"], env, port, stack["tmp"] / "gateway-2fa-required.log"):
        yield {
            "base": f"http://localhost:{port}",
            "env": env,
            "admin_dsn": stack["admin_env"]["DATABASE_URL"],
        }


def test_required_policy_enrols_a_totp_app_in_the_browser(
    required_gateway: dict[str, Any], stack: dict[str, Any], browser: Any
) -> None:
    """No factor yet: the login lands on the enrolment page, the TOTP enrolment completes the
    login; the next login asks for a code."""
    login = f"ra-totp-{secrets.token_hex(3)}"
    subprocess.run(
        [str(BIN / "ca-admin"), "create-officer", login],
        input=PASSWORD + "\n",
        text=True,
        env=stack["admin_env"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    ctx = browser.new_context(base_url=required_gateway["base"], locale="en")
    try:
        pg = ctx.new_page()
        _password_login(pg, login)
        _ready(pg, "**/ra/factors")
        assert pg.is_visible("#f-enrol-required")
        pg.click("#f-add-totp")
        pg.wait_for_selector("#f-totp-enrol:not([hidden])")
        secret = pg.inner_text("#f-totp-secret").replace(" ", "")
        pg.fill("#f-totp-enrol-code", pyotp.TOTP(secret).now())
        pg.click("#f-totp-enrol-submit")
        _ready(pg, "**/ra/register")
        pg.goto("/ra/factors")
        pg.wait_for_selector("#f-table tbody tr[data-kind='totp']")
        assert not pg.is_visible("#f-enrol-required")
        pg.click("#logout")
        _ready(pg, "**/ra/")
        _password_login(pg, login)
        _ready(pg, "**/ra/verify")
        assert pg.is_visible("#f-totp-form") and not pg.is_visible("#f-webauthn-box")
        pg.fill("#f-totp-code", "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
        pg.click("#f-totp-submit")
        pg.wait_for_selector("#msg.error")
        assert pg.url.endswith("/ra/verify")
        # the next period's code (inside the window; the enrolment used this period's)
        pg.fill("#f-totp-code", pyotp.TOTP(secret).at(time.time() + 30))
        pg.click("#f-totp-submit")
        _ready(pg, "**/ra/register")
    finally:
        ctx.close()
