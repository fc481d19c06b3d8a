"""Schemathesis over the gateway's own ``/api/v1/openapi.json``, three ways: anonymous, as a
subscriber who has changed the password, as an RA officer.

The gateway runs in a thread with its own event loop on a real port (Schemathesis calls are
synchronous), wired to the real signer daemon on SoftHSM and a fresh PostgreSQL database. Each
operation gets a fixed, small number of examples, positive and negative (data that violates
the schema), derandomized so CI sees the same cases every run. Checks: no 5xx, every status
and content type documented, every response body valid against its schema. Applying gets
fresh CSRs and the current terms version from a hook (random strings are never a valid CSR);
the test asserts that the 201s of registration and applying were seen.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from argon2 import PasswordHasher
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.loader import load
from config.manifest import manifest_path
from db.migrate import migrate_pool
from db.pool import create_pool
from db.queries import officers
from gateway import terms
from gateway.api import contract
from gateway.app import make_app
from gateway.config import GatewayConfig, RateLimits
from signer.client import SignerClient
from tests.integration import lifecycle
from tests.integration.conftest import OFFICER_LOGIN, OFFICER_PASSWORD, subscriber_body
from tests.integration.lifecycle import csr_pem, new_key
from tests.support.identities import national_id
from tests.support.signer_proc import socket_of

ca_config = lifecycle.ca_config
signer_process = lifecycle.signer_process
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 10  # per operation and way: about 900 requests in all
SEEN: collections.Counter[tuple[str, str, str, int]] = collections.Counter()
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


class GatewayThread:
    """The gateway app on 127.0.0.1:<free port>, in a thread with its own event loop."""

    def __init__(self, config: GatewayConfig, signer_socket: Path, owner_dsn: str) -> None:
        self.config = config
        self.signer_socket = signer_socket
        self.owner_dsn = owner_dsn  # migrations and the test officer: the owner's work
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    def __enter__(self) -> GatewayThread:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"gateway did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        from aiohttp import web

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        owner = await create_pool(self.owner_dsn, min_size=1, max_size=1)
        try:
            await migrate_pool(owner)
            async with owner.acquire() as conn:
                await officers.insert(conn, OFFICER_LOGIN, PasswordHasher().hash(OFFICER_PASSWORD))
        finally:
            await owner.close()
        pool = await create_pool(self.config.database_url, min_size=1, max_size=8)
        client = SignerClient([f"unix:{self.signer_socket}"], timeout=5)
        runner = web.AppRunner(make_app(self.config, db_pool=pool, signer_client=client))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await pool.close()


@pytest.fixture(scope="module")
def gateway(app_url: str, owner_url: str, ca_config: Path, signer_process: Any) -> Iterator[str]:
    config = dataclasses.replace(
        GatewayConfig(
            captcha=False,
            database_url=app_url,  # the application role; the owner migrated (conftest)
            migrate_on_start=False,
            manifest_path=manifest_path(load(ca_config, environ={})),
            ratelimit=RateLimits.off(),  # one 127.0.0.1 on a still clock
        )
    )
    with GatewayThread(config, socket_of(ca_config), owner_url) as running:
        yield running.url


class Login:
    """A session (cookie + CSRF token) that logs in again when a call ended it."""

    def __init__(self, base: str, kind: str) -> None:
        self.base, self.kind = base, kind
        self.cookies: dict[str, str] = {}
        self.csrf = ""
        self.account = self.password = ""

    def _officer(self) -> None:
        s = requests.Session()
        r = s.post(
            self.base + "/api/v1/ra/session",
            json={"login": OFFICER_LOGIN, "password": OFFICER_PASSWORD},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        self.cookies, self.csrf = s.cookies.get_dict(), r.json()["csrf_token"]

    def _subscriber(self) -> None:
        """Log in; a new subscriber when there is none yet or an officer's password reset
        (the officer run may hit this subscriber's id) ended the old one."""
        if self.account and self._subscriber_login():
            return
        self._register()
        assert self._subscriber_login()

    def _subscriber_login(self) -> bool:
        s = requests.Session()
        r = s.post(
            self.base + "/api/v1/session",
            json={"account": self.account, "password": self.password},
            timeout=30,
        )
        if r.status_code != 200 or r.json()["must_change_password"]:
            return False
        self.cookies, self.csrf = s.cookies.get_dict(), r.json()["csrf_token"]
        return True

    def _register(self) -> None:
        """Registered by an officer; the slip password changed once."""
        officer = Login(self.base, "officer")
        officer.refresh()
        r = requests.post(
            self.base + "/api/v1/ra/subscribers",
            json=subscriber_body(),
            cookies=officer.cookies,
            headers={"X-CSRF-Token": officer.csrf},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        self.account, initial = r.json()["account"], r.json()["initial_password"]
        s = requests.Session()
        r = s.post(
            self.base + "/api/v1/session",
            json={"account": self.account, "password": initial},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        self.password = "changed-pw-1"
        r = s.post(
            self.base + "/api/v1/password",
            timeout=30,
            json={"old_password": initial, "new_password": self.password},
            headers={"X-CSRF-Token": r.json()["csrf_token"]},
        )
        assert r.status_code == 204, r.text

    def refresh(self) -> None:
        if self.kind == "officer":
            self._officer()
        elif self.kind == "subscriber":
            self._subscriber()

    def apply_to(self, case: Any) -> None:
        if self.kind == "anonymous":
            return
        if not self.cookies:
            self.refresh()
        case.cookies = {**(case.cookies or {}), **self.cookies}
        case.headers = {**(case.headers or {}), "X-CSRF-Token": self.csrf}

    def after(self, case: Any, response: Any) -> None:
        """Log in again next time when this call ended the session: a logout, or a 401
        ``unauthenticated`` where the session should have counted (an officer's password
        reset ends a subscriber's sessions). The other realm's 401s are expected."""
        if self.kind == "anonymous":
            return
        own = case.path.startswith("/api/v1/ra/") == (self.kind == "officer")
        logout = case.method.upper() == "DELETE" and case.path.endswith("/session")
        lost = response.status_code == 401 and response.json().get("error") == "unauthenticated"
        if own and (logout or lost):
            self.cookies = {}


def _mode(case: Any) -> GenerationMode:
    meta = getattr(case, "meta", None) or case._meta
    return meta.generation.mode


def _supply_valid_inputs(case: Any) -> None:
    """Random strings are never a valid CSR, and a random ID number rarely has a valid check
    digit: positive applications get a fresh key's CSR and the current terms version, positive
    registrations a valid national ID, e-mail and country (the rest of each body stays as
    generated)."""
    if _mode(case) is not GenerationMode.POSITIVE or not isinstance(case.body, dict):
        return
    where = (case.method.upper(), case.path)
    if where == ("POST", "/api/v1/certificates"):
        case.body = {**case.body, "csr": csr_pem(new_key("p256")), "terms_version": terms.VERSION}
    elif where == ("POST", "/api/v1/ra/subscribers"):
        subject = case.body.get("subject")
        subject = {**subject, "c": "TW"} if isinstance(subject, dict) else subject
        case.body = {
            **case.body,
            "id_number": national_id(),
            "email": f"st{secrets.token_hex(4)}@example.tw",
            "subject": subject,
        }


SESSIONS: dict[str, Login] = {}
# OCSP requests are DER bytes: sent as they are, like application/octet-stream
schemathesis.serializer.alias("application/ocsp-request", "application/octet-stream")
schemathesis.serializer.alias("application/pkixcmp", "application/octet-stream")  # CMP, DER


def _schema(base: str) -> Any:
    doc = requests.get(base + "/api/v1/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(doc)
    schema.config.update(base_url=base)
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=EXAMPLES,
        deterministic=True,
        with_security_parameters=False,
        allow_x00=True,
    )
    return schema


@pytest.fixture(scope="module")
def api_schema(gateway: str) -> Any:
    return _schema(gateway)


def _strategy(operation: Any) -> Any:
    """Positive cases, plus negative ones where the operation takes any input to break."""
    positive = operation.as_strategy(GenerationMode.POSITIVE)
    has_input = operation.body or any(True for _ in operation.iter_parameters())
    return positive | operation.as_strategy(GenerationMode.NEGATIVE) if has_input else positive


WAYS = ("anonymous", "subscriber", "officer")


def _run(case: Any, gateway: str, who: str) -> None:
    login = SESSIONS.setdefault(who, Login(gateway, who))
    login.apply_to(case)
    _supply_valid_inputs(case)
    response = case.call_and_validate(checks=CHECKS)
    SEEN[(who, case.method.upper(), case.path, response.status_code)] += 1
    login.after(case, response)


@pytest.mark.parametrize("who", WAYS)
@pytest.mark.parametrize(("method", "path"), sorted(contract.OPERATIONS))
def test_operation(api_schema: Any, gateway: str, who: str, method: str, path: str) -> None:
    operation = api_schema[path][method]

    @FUZZ
    @given(case=_strategy(operation))
    def run(case: Any) -> None:
        _run(case, gateway, who)

    run()


def test_the_runs_reached_success(gateway: str) -> None:
    """Runs after the ones above (pytest keeps file order): they must have got past
    validation to real work, not only to 400s."""
    if not SEEN:
        pytest.skip("the Schemathesis tests did not run (deselected)")
    assert SEEN[("officer", "POST", "/api/v1/ra/subscribers", 201)] >= 1, SEEN
    assert SEEN[("subscriber", "POST", "/api/v1/certificates", 201)] >= 1, SEEN
    assert SEEN[("subscriber", "GET", "/api/v1/me", 200)] >= 1, SEEN
    assert SEEN[("anonymous", "GET", "/api/v1/me", 401)] >= 1, SEEN
    ways = {who for who, *_ in SEEN}
    assert ways == {"anonymous", "subscriber", "officer"}
