"""The portal for everyone, in Debian's Chromium against the whole stack: several tabs, error
messages in the page's language with the field marked, no silent truncation, the revocation
request form and revocation data, downloads; then every portal, RA and operator page at phone
(390 px) and desktop (1366 px) width in zh-TW and English (nothing wider than the window,
screenshots under ``test-output/layout/``) and axe-core (0 critical, 0 serious).

axe-core comes from npm (web/node_modules, installed by scripts/bootstrap.sh); it is injected
into pages of a context made with ``bypass_csp=True``, the only context that bypasses the CSP.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from gateway.errors import Kind
from tests.e2e.conftest import OFFICER_LOGIN, OFFICER_PASSWORD
from tests.support.identities import national_id
from tests.support.softhsm import REPO

AXE = REPO / "web" / "node_modules" / "axe-core" / "axe.min.js"
LAYOUT = REPO / "test-output" / "layout"
PASSWORD = "tabs-Pass-1"
WIDTHS = {"phone": 390, "desktop": 1366}
CJK = re.compile(r"[\u4e00-\u9fff]")


class Api:
    """A plain HTTP client with its own cookies (an RA officer's or a subscriber's browser)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.open = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar)).open
        self.csrf = ""

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if self.csrf:
            hdrs["X-CSRF-Token"] = self.csrf
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with self.open(req, timeout=30) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else None


def _register(ra: Api, cn_tag: str) -> tuple[str, str, str]:
    idn = national_id()
    status, slip = ra.call(
        "POST",
        "/api/v1/ra/subscribers",
        {
            "id_number": idn,
            "name": "林美華",
            "email": f"{cn_tag.lower()}@example.tw",
            "phone": "02-2311-0000",
            "address": "台北市中正區重慶南路一段 2 號",
            "subject": {"cn": f"{idn}-63-{cn_tag}", "o": "Example"},
            "usages": ["signing", "encryption"],
        },
    )
    assert status == 201, slip
    return slip["account"], slip["initial_password"], idn


@pytest.fixture(scope="module")
def ra(stack: dict[str, Any]) -> Api:
    client = Api(stack["base"])
    status, body = client.call(
        "POST", "/api/v1/ra/session", {"login": OFFICER_LOGIN, "password": OFFICER_PASSWORD}
    )
    assert status == 200
    client.csrf = body["csrf_token"]
    return client


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    return {}


def _ready(page: Any) -> Any:
    page.wait_for_selector("body[data-ready='1']", timeout=30000)
    return page


def _go(page: Any, path: str) -> Any:
    page.goto(path)
    return _ready(page)


def _login(page: Any, account: str, password: str) -> None:
    _go(page, "/")
    page.fill("#account", account)
    page.fill("#password", password)
    page.click("#login-submit")


def _first_login(page: Any, account: str, initial: str, new: str = PASSWORD) -> None:
    _login(page, account, initial)
    page.wait_for_url("**/portal/password")
    _ready(page)
    page.fill("#old-password", initial)
    page.fill("#new-password", new)
    page.fill("#new-password2", new)
    page.click("#password-submit")
    page.wait_for_selector("#msg.ok")


def _context(browser: Any, base: str, **extra: Any) -> Any:
    return browser.new_context(
        base_url=base,
        accept_downloads=True,
        locale="zh-TW",
        viewport={"width": 1280, "height": 860},
        **extra,
    )


def _change_password(page: Any, old: str, new: str) -> str:
    _go(page, "/portal/password")
    page.fill("#old-password", old)
    page.fill("#new-password", new)
    page.fill("#new-password2", new)
    page.click("#password-submit")
    page.wait_for_selector("#msg.ok, #msg.error")
    return page.inner_text("#msg")


def test_two_tabs_act_and_logout_ends_the_session(
    stack: dict[str, Any], browser: Any, ra: Api
) -> None:
    account, initial, _ = _register(ra, "TABS")
    ctx = _context(browser, stack["base"])
    try:
        first = ctx.new_page()
        _first_login(first, account, initial)
        second = ctx.new_page()  # a new tab: the cookie, but nothing in its sessionStorage
        _go(second, "/portal/")
        assert second.evaluate("sessionStorage.getItem('ca.csrf')") is None
        # both tabs make changes (CSRF-protected POSTs)
        assert "密碼更改成功" in _change_password(second, PASSWORD, "second-tab-1")
        assert "密碼更改成功" in _change_password(first, "second-tab-1", "first-tab-1")
        cookie = next(c["value"] for c in ctx.cookies() if c["name"] == "ca_session")
        # log out in the second tab
        _go(second, "/portal/")
        second.click("#logout")
        second.wait_for_url(stack["base"] + "/")
        # the first tab's session is over on the server, not only in the browser
        assert first.evaluate("fetch('/api/v1/me').then((r) => r.status)") == 401
        stale = Api(stack["base"])
        stale.jar.set_cookie(
            http.cookiejar.Cookie(
                0,
                "ca_session",
                cookie,
                None,
                False,
                "127.0.0.1",
                False,
                False,
                "/",
                True,
                False,
                None,
                False,
                None,
                None,
                {},
            )
        )
        assert stale.call("GET", "/api/v1/me")[0] == 401
        first.goto("/portal/info")
        first.wait_for_url(stack["base"] + "/")
    finally:
        ctx.close()


def test_logout_that_fails_says_so(stack: dict[str, Any], browser: Any, ra: Api) -> None:
    account, initial, _ = _register(ra, "LOGOUT")
    ctx = _context(browser, stack["base"])
    try:
        page = ctx.new_page()
        _first_login(page, account, initial)
        _go(page, "/portal/")
        # the network drops the DELETE: the page must not pretend the session ended
        page.route(
            "**/api/v1/session",
            lambda route: route.abort() if route.request.method == "DELETE" else route.continue_(),
        )
        page.click("#logout")
        page.wait_for_selector("#msg.error")
        assert "登出失敗" in page.inner_text("#msg") and page.url.endswith("/portal/")
        assert page.evaluate("fetch('/api/v1/me').then((r) => r.status)") == 200
        page.unroute("**/api/v1/session")
        page.click("#logout")
        page.wait_for_url(stack["base"] + "/")
        assert page.evaluate("fetch('/api/v1/me').then((r) => r.status)") == 401
    finally:
        ctx.close()


def _api_md_codes() -> set[str]:
    """The codes API.md names after a status ("401 `invalid_credentials`"), when the shared
    folder lies beside the checkout (as in CI); the gateway's closed set is walked anyway."""
    for shared in (REPO.parent / "shared", REPO.parent.parent / "shared"):
        if (shared / "API.md").exists():
            return set(re.findall(r"[45]\d\d `([a-z_]+)`", (shared / "API.md").read_text()))
    return set()


@pytest.mark.parametrize("lang", ["zh-TW", "en"])
def test_every_error_code_has_a_message(stack: dict[str, Any], browser: Any, lang: str) -> None:
    """The login page shown each error code of the gateway and of API.md with a server message
    that must never reach the page: the page's own text in its language appears instead."""
    codes = sorted({k.value for k in Kind} | _api_md_codes())
    ctx = _context(browser, stack["base"])
    try:
        page = ctx.new_page()
        current: dict[str, str] = {}

        def answer(route: Any) -> None:
            if route.request.method != "POST":
                route.continue_()
                return
            route.fulfill(
                status=400,
                content_type="application/json",
                body=json.dumps({"error": current["code"], "message": "SERVER-ENGLISH-TEXT"}),
            )

        page.route("**/api/v1/session", answer)
        _go(page, f"/?lang={lang}")
        generic = page.evaluate(
            "JSON.parse(document.getElementById('page-data').textContent).messages.err_generic"
        )
        seen = {}
        for code in codes:
            current["code"] = code
            page.evaluate("document.getElementById('msg').textContent = ''")
            page.fill("#account", "someone")
            page.fill("#password", "some-password")
            page.click("#login-submit")
            page.wait_for_function("() => document.getElementById('msg').textContent !== ''")
            text = page.inner_text("#msg")
            assert "SERVER-ENGLISH-TEXT" not in text, (code, text)
            assert not text.startswith(generic) and code not in text, (code, text)
            if lang == "zh-TW":
                assert CJK.search(text), (code, text)
            else:
                assert not CJK.search(text), (code, text)
            seen[code] = text
        assert len(seen) == len(codes) >= 28
    finally:
        ctx.close()


def test_fields_in_error_are_marked(stack: dict[str, Any], browser: Any) -> None:
    ctx = _context(browser, stack["base"])
    try:
        page = ctx.new_page()
        _go(page, "/ra/")
        page.fill("#ra-login", OFFICER_LOGIN)
        page.fill("#ra-password", OFFICER_PASSWORD)
        page.click("#ra-login-submit")
        page.wait_for_url("**/ra/register")
        _ready(page)
        sent: list[str] = []
        page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
        idn = national_id()
        for sel, value in (
            ("#r-id_number", "A123456788"),
            ("#r-name", "陳小華"),
            ("#r-email", "chen@example.tw"),
            ("#r-cn", f"{idn}-63-CHEN"),
        ):
            page.fill(sel, value)
        page.click("#register-submit")
        # the check digit is wrong: refused in the page, the field marked and described
        page.wait_for_selector("#r-id_number[aria-invalid='true']")
        described = page.get_attribute("#r-id_number", "aria-describedby")
        assert "檢查碼" in page.inner_text(f"#{described}") and "檢查碼" in page.inner_text("#msg")
        assert not sent
        page.screenshot(path=str(_layout_dir() / "field-error-id.png"), full_page=True)
        # a country the page lets through, the server refuses: subject.c marks the 國別 field
        page.fill("#r-id_number", idn)
        page.fill("#r-c", "XX")
        page.click("#register-submit")
        page.wait_for_selector("#r-c[aria-invalid='true']")
        assert page.get_attribute("#r-id_number", "aria-invalid") is None  # cleared
        msg = page.inner_text("#msg")
        assert "欄位內容不正確" in msg and "國別" in msg and "subject" not in msg
        page.fill("#r-c", "tw")
        page.click("#register-submit")
        page.wait_for_selector("#slip:not([hidden])")
    finally:
        ctx.close()


def test_no_silent_truncation_and_checks_before_the_captcha(
    stack: dict[str, Any], browser: Any, captcha_gateway: str, ra: Api
) -> None:
    account, initial, _ = _register(ra, "LONGPW")
    ctx = _context(browser, stack["base"])
    try:
        page = ctx.new_page()
        _first_login(page, account, initial)
        _go(page, "/portal/password")
        long = "abcdefgh12345678x"  # 17 characters: one over the 6-16 rule
        page.fill("#old-password", PASSWORD)
        page.fill("#new-password", long)
        page.fill("#new-password2", long)
        assert page.input_value("#new-password") == long  # nothing cut while typing
        page.click("#password-submit")
        page.wait_for_selector("#new-password[aria-invalid='true']")
        assert "6~16" in page.inner_text("#msg")
        # the old password still works: nothing shorter was set
        other = ctx.browser.new_context(base_url=stack["base"])
        try:
            p2 = other.new_page()
            _login(p2, account, PASSWORD)
            p2.wait_for_url("**/portal/")
        finally:
            other.close()
    finally:
        ctx.close()
    # with the captcha on: an empty or over-long field is told before the captcha is spent
    ctx = _context(browser, captcha_gateway)
    try:
        page = ctx.new_page()
        _go(page, "/")
        image = page.get_attribute("#captcha-img", "src")
        page.wait_for_function("() => document.getElementById('captcha-img').naturalWidth > 0")
        # drawn at the size it is shown: nothing squeezed
        assert page.locator("#captcha-img").evaluate(
            "(i) => [i.naturalWidth, i.naturalHeight, i.width, i.height]"
        ) == [240, 80, 240, 80]
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        page.fill("#account", account)
        page.fill("#password", "x" * 300)
        page.fill("#captcha", "ACDEF")
        page.click("#login-submit")
        page.wait_for_selector("#password[aria-invalid='true']")
        assert "256" in page.inner_text("#msg")
        page.fill("#password", PASSWORD)
        page.fill("#captcha", "")
        page.click("#login-submit")
        page.wait_for_selector("#captcha[aria-invalid='true']")
        assert not posts and page.get_attribute("#captcha-img", "src") == image
        # the audio alternative: a player with spoken digits replaces nothing but the answer
        page.click("#captcha-audio")
        page.wait_for_selector("#captcha-audio-box:not([hidden])")
        src = page.get_attribute("#captcha-audio-player", "src")
        assert src.startswith("data:audio/wav;base64,")
        page.wait_for_function("() => document.getElementById('captcha-audio-player').duration > 2")
        page.screenshot(path=str(_layout_dir() / "login-captcha-audio.png"), full_page=True)
    finally:
        ctx.close()


def _layout_dir() -> Path:
    LAYOUT.mkdir(parents=True, exist_ok=True)
    return LAYOUT


@pytest.fixture(scope="module")
def axe_ctx(stack: dict[str, Any], browser: Any, ra: Api, state: dict[str, Any]) -> Iterator[Any]:
    """One context that bypasses the CSP (to inject axe-core), with a subscriber who holds a
    signing and a revoked encryption certificate, and an RA officer, both logged in."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: scripts/bootstrap.sh installs web/ dev dependencies")
    for old in [*_layout_dir().glob("phone-*.png"), *_layout_dir().glob("desktop-*.png")]:
        old.unlink()
    ctx = _context(browser, stack["base"], bypass_csp=True)
    page = ctx.new_page()
    page.on("dialog", lambda d: d.accept())
    account, initial, idn = _register(ra, "AXE")
    state.update(account=account, id_number=idn)
    _first_login(page, account, initial)
    for usage in ("signing", "encryption"):
        _go(page, "/portal/apply")
        page.check("#terms-accept")
        page.check(f"#usage-{usage}")
        page.check("#alg-ec")
        page.click("#apply-submit")
        page.wait_for_selector("#apply-result:not([hidden])", timeout=60000)
    # the RA and operator pages need an officer session in this context too
    _go(page, "/ra/")
    page.fill("#ra-login", OFFICER_LOGIN)
    page.fill("#ra-password", OFFICER_PASSWORD)
    page.click("#ra-login-submit")
    page.wait_for_url("**/ra/register")
    yield ctx, page
    ctx.close()


def test_downloads_cer_and_chain(
    axe_ctx: Any, stack: dict[str, Any], ra: Api, state: dict[str, Any]
) -> None:
    _, page = axe_ctx
    _go(page, "/portal/download")
    assert page.locator("#download-table input[type=checkbox]:checked").count() == 2
    files = []
    page.on("download", lambda d: files.append(d))
    page.click("#download-submit")
    page.wait_for_selector("#msg.ok", timeout=60000)
    page.wait_for_function("() => document.querySelectorAll('#files-list a').length === 2")
    names = sorted(d.suggested_filename for d in files)
    assert len(names) == 2 and all(n.endswith(".cer") for n in names), names
    der = Path(files[0].path()).read_bytes()
    cert = x509.load_der_x509_certificate(der)  # DER, what a .cer holds
    assert state["id_number"] in cert.subject.rfc4514_string()
    with page.expect_download() as dl:
        page.click("#chain-link")
    chain = x509.load_pem_x509_certificates(Path(dl.value.path()).read_bytes())
    assert len(chain) == 2 and chain[-1].subject == chain[-1].issuer  # issuing, then the root
    assert cert.issuer == chain[0].subject
    # the RA revokes the encryption certificate: date and reason for both of them
    status, certs = ra.call("GET", f"/api/v1/ra/subscribers?q={state['account']}")
    enc = next(c for c in certs["subscribers"][0]["certificates"] if c["usage"] == "encryption")
    status, revoked = ra.call(
        "POST", f"/api/v1/ra/certificates/{enc['serial']}/revocation", {"reason": "keyCompromise"}
    )
    assert status == 200 and revoked["revocation_reason"] == "keyCompromise"
    state.update(
        revoked_serial=enc["serial"], subscriber_id=certs["subscribers"][0]["subscriber_id"]
    )
    _go(page, "/portal/revoke")
    row = page.locator("#revoke-table tr", has_text=enc["serial"])
    assert "金鑰洩漏" in row.inner_text() and re.search(r"\d{4}-\d\d-\d\d", row.inner_text())
    _go(page, "/portal/info")
    assert "金鑰洩漏" in page.inner_text("section[data-status='revoked'] .revocation-reason")


def test_no_key_is_made_for_a_refused_application(axe_ctx: Any) -> None:
    """Applying for a usage already held is refused before a key pair is generated."""
    _, page = axe_ctx
    _go(page, "/portal/apply")
    count = """() => new Promise((ok) => { const r = indexedDB.open("ca-portal");
        r.onsuccess = () => { const q = r.result.transaction("keys").objectStore("keys").count();
        q.onsuccess = () => { ok(q.result); r.result.close(); }; }; })"""
    before = page.evaluate(count)
    page.check("#terms-accept")
    page.check("#usage-signing")
    page.check("#alg-ec")
    page.click("#apply-submit")
    page.wait_for_selector("#msg.error")
    assert "已有有效憑證" in page.inner_text("#msg")
    assert page.evaluate(count) == before == 2


def test_revocation_request_form(axe_ctx: Any, state: dict[str, Any]) -> None:
    _, page = axe_ctx
    _go(page, "/portal/revoke")
    page.locator("button.rv-open").first.click()
    sheet = page.locator("#rv-sheet")
    sheet.wait_for(state="visible")
    text = sheet.inner_text()
    for item in (
        "憑證廢止申請單",
        state["id_number"],
        "林美華",
        "簽章憑證",
        "金鑰洩漏",
        "資料異動",
        "申請人簽名",
    ):
        assert item in text, item
    serial = page.inner_text("#rv-serial")
    assert re.fullmatch(r"[0-9a-f]+", serial) and serial != state["revoked_serial"]
    assert page.locator("#rv-sheet input[type=checkbox]").count() == 6
    page.emulate_media(media="print")
    assert sheet.is_visible() and not page.is_visible("#revoke-table")
    assert not page.is_visible("nav.menu")
    page.screenshot(path=str(_layout_dir() / "revocation-request-print.png"), full_page=True)
    page.emulate_media(media="screen")


def _pages(state: dict[str, Any]) -> list[tuple[str, str]]:
    sub = [("login", "/"), ("home", "/portal/")] + [
        (n, f"/portal/{n}")
        for n in ("apply", "renew", "download", "revoke", "info", "password", "import")
    ]
    officer = [
        ("ra-login", "/ra/"),
        ("ra-register", "/ra/register"),
        ("ra-subscribers", "/ra/subscribers?q="),
        ("ra-subscriber", f"/ra/subscriber?id={state['subscriber_id']}"),
        ("ra-audit", "/ra/audit"),
    ]
    return sub + officer + [("operator", "/operator/")]


def _axe(page: Any) -> list[dict[str, Any]]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, { resultTypes: ["violations"] });
        return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
          nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ") + " " + n.failureSummary) }));
    }""")
    return [v for v in result if v["impact"] in ("critical", "serious")]


def test_every_page_fits_and_passes_axe(
    axe_ctx: Any, stack: dict[str, Any], ra: Api, state: dict[str, Any]
) -> None:
    _, page = axe_ctx
    problems: dict[str, Any] = {}
    for lang in ("zh-TW", "en"):
        for device, width in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": 860})
            for name, path in _pages(state):
                url = path + ("&" if "?" in path else "?") + f"lang={lang}"
                page.goto(url)
                if name == "operator":
                    page.wait_for_selector("#board:not([hidden])", timeout=20000)
                    page.wait_for_selector(".uplot", timeout=20000)
                    page.wait_for_function(
                        "() => /\\d/.test(document.getElementById('t-issued').textContent)"
                    )
                    # counters are whole numbers; the status line speaks one language
                    assert re.fullmatch(r"\d[\d,]*", page.inner_text("#t-issued"))
                    assert re.fullmatch(r"\d[\d,]*", page.inner_text("#t-5xx"))
                    status = page.inner_text("#status")
                    want = (
                        r"更新時間 \d\d:\d\d:\d\d" if lang == "zh-TW" else r"updated \d\d:\d\d:\d\d"
                    )
                    assert re.fullmatch(want, status), status
                    assert page.locator(".uplot").count() == 4
                else:
                    _ready(page)
                assert page.get_attribute("html", "lang") == lang, (name, lang)
                sizes = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
                if sizes[0] > sizes[1]:
                    problems[f"{name} {lang} {width}: overflow"] = sizes
                page.screenshot(path=str(LAYOUT / f"{device}-{lang}-{name}.png"), full_page=True)
                # axe in both languages, each at one width (colours and labels do not change)
                if (lang, device) in (("zh-TW", "desktop"), ("en", "phone")):
                    found = _axe(page)
                    if found:
                        problems[f"{name} {lang} {width}: axe"] = found
    assert not problems, json.dumps(problems, ensure_ascii=False, indent=1)
    shots = sorted(p.name for p in LAYOUT.glob("*.png"))
    for device in WIDTHS:
        for lang in ("zh-TW", "en"):
            assert sum(n.startswith(f"{device}-{lang}-") for n in shots) == len(_pages(state))


def test_the_menu_folds_on_a_phone(axe_ctx: Any) -> None:
    _, page = axe_ctx
    page.set_viewport_size({"width": 390, "height": 800})
    _go(page, "/portal/download?lang=zh-TW")
    toggle = page.locator("#menu-toggle")
    assert toggle.is_visible() and not page.is_visible("#menu-list")
    toggle.click()
    assert page.is_visible("#menu-list") and toggle.get_attribute("aria-expanded") == "true"
    page.screenshot(path=str(LAYOUT / "phone-zh-TW-menu-open.png"), full_page=True)
    # the download table scrolls inside its box; the page itself does not
    box = page.locator("#download-table").evaluate(
        "(t) => [t.parentElement.scrollWidth, t.parentElement.clientWidth]"
    )
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    assert box[0] > box[1]
    page.set_viewport_size({"width": 1366, "height": 860})
    _go(page, "/portal/download")
    assert not page.is_visible("#menu-toggle") and page.is_visible("#menu-list")


def test_nothing_overflows_at_360_px(axe_ctx: Any, state: dict[str, Any]) -> None:
    """The narrowest phones the layout is made for (the screenshots are taken at 390)."""
    _, page = axe_ctx
    page.set_viewport_size({"width": 360, "height": 740})
    wide = {}
    for name, path in _pages(state):
        page.goto(path + ("&" if "?" in path else "?") + "lang=en")
        if name == "operator":
            page.wait_for_selector(".uplot", timeout=20000)
        else:
            _ready(page)
        sizes = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        if sizes[0] > sizes[1]:
            wide[name] = sizes
    page.set_viewport_size({"width": 1366, "height": 860})
    assert not wide, wide


def test_axe_on_page_states(axe_ctx: Any, stack: dict[str, Any], browser: Any) -> None:
    """The states a page shows after an action: a field in error, the password slip, the
    revocation request, the operator login form."""
    _, page = axe_ctx
    page.set_viewport_size({"width": 1366, "height": 860})
    problems: dict[str, Any] = {}
    _go(page, "/ra/register?lang=zh-TW")
    page.click("#register-submit")  # nothing filled in: the first required field is marked
    page.wait_for_selector("#r-id_number[aria-invalid='true']")
    problems["field error"] = _axe(page)
    idn = national_id()
    for sel, value in (
        ("#r-id_number", idn),
        ("#r-name", "黃大同"),
        ("#r-email", "huang@example.tw"),
        ("#r-cn", f"{idn}-63-HUANG"),
    ):
        page.fill(sel, value)
    page.click("#register-submit")
    page.wait_for_selector("#slip:not([hidden])")
    problems["password slip"] = _axe(page)
    _go(page, "/portal/revoke")
    page.locator("button.rv-open").first.click()
    page.locator("#rv-sheet").wait_for(state="visible")
    problems["revocation request"] = _axe(page)
    ctx = _context(browser, stack["base"], bypass_csp=True)
    try:
        fresh = ctx.new_page()
        fresh.goto("/operator/")
        fresh.wait_for_selector("#login:not([hidden])")
        problems["operator login"] = _axe(fresh)
    finally:
        ctx.close()
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, json.dumps(problems, ensure_ascii=False, indent=1)
