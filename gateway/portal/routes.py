"""The browser portal: server-rendered page shells (zh-TW first, English selectable), the built
JavaScript and CSS under /static/, and the security headers of every response.

The shells hold no data and no secret: the browser code fills them through the JSON API of
API.md alone (session cookie + the CSRF token kept in sessionStorage).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import appkeys
from gateway.portal import i18n
from gateway.portal.render import TEMPLATES

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
LANG_COOKIE = "lang"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)

# page name -> (template, title key); subscriber pages live under /portal/, RA pages under /ra/
SUBSCRIBER_PAGES = {
    "": ("home.html", "home_title"),
    "apply": ("apply.html", "m_apply"),
    "renew": ("renew.html", "m_renew"),
    "download": ("download.html", "m_download"),
    "revoke": ("revoke.html", "m_revoke"),
    "info": ("info.html", "m_info"),
    "password": ("password.html", "m_password"),
    "import": ("import.html", "m_import"),
}
RA_PAGES = {
    "register": ("ra_register.html", "ra_m_register"),
    "subscribers": ("ra_search.html", "ra_m_search"),
    "subscriber": ("ra_subscriber.html", "ra_subscriber_title"),
    "audit": ("ra_audit.html", "ra_m_audit"),
    "factors": ("ra_factors.html", "ra_m_factors"),  # second factor: enrolment
    "verify": ("ra_verify.html", "f_verify_title"),  # second factor: the login step
}
MENU = ("apply", "renew", "download", "revoke", "info", "password", "import")
RA_MENU = ("register", "subscribers", "audit", "factors")


def _version(name: str) -> str:
    path = STATIC / name
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return "missing"


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CSP and friends on every answer (pages, static files, API errors alike)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.setdefault("Content-Security-Policy", CSP)
        raise
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    return response


def _render(
    request: web.Request, template: str, *, page: str, area: str, title_key: str
) -> web.Response:
    lang = i18n.pick(request.query.get("lang"), request.cookies.get(LANG_COOKIE))
    t = i18n.translator(lang)
    cfg = request.app[appkeys.CONFIG]
    other = "en" if lang == "zh-TW" else "zh-TW"
    html = TEMPLATES.get_template(template).render(
        t=t,
        lang=lang,
        other_lang=other,
        page=page,
        area=area,
        title=t(title_key),
        menu=MENU,
        ra_menu=RA_MENU,
        js_messages=i18n.js_messages(lang),
        js_version=request.app[_VERSIONS]["portal.js"],
        legacy_js_version=request.app[_VERSIONS]["portal-legacy.js"],
        css_version=request.app[_VERSIONS]["portal.css"],
        password_min=cfg.password_min,
        password_max=cfg.password_max,
        renewal_days=cfg.renewal_window_days,
        public_url=cfg.public_url,
    )
    response = web.Response(
        text=html, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"}
    )
    if request.query.get("lang") in i18n.MESSAGES:
        response.set_cookie(LANG_COOKIE, lang, path="/", samesite="Strict", max_age=365 * 86400)
    return response


async def login_page(request: web.Request) -> web.Response:
    return _render(request, "login.html", page="login", area="subscriber", title_key="login_title")


async def subscriber_page(request: web.Request) -> web.Response:
    name = request.match_info.get("page", "")
    if name not in SUBSCRIBER_PAGES:
        raise web.HTTPNotFound()
    template, title = SUBSCRIBER_PAGES[name]
    return _render(request, template, page=name or "home", area="subscriber", title_key=title)


async def ra_login_page(request: web.Request) -> web.Response:
    return _render(request, "ra_login.html", page="ra-login", area="ra", title_key="ra_login_title")


async def ra_page(request: web.Request) -> web.Response:
    name = request.match_info["page"]
    if name not in RA_PAGES:
        raise web.HTTPNotFound()
    template, title = RA_PAGES[name]
    return _render(request, template, page=f"ra-{name}", area="ra", title_key=title)


async def favicon(request: web.Request) -> web.Response:
    """Browsers ask for /favicon.ico on every site; answer with the portal's icon, not a 404."""
    return web.Response(
        body=(STATIC / "favicon.ico").read_bytes(),
        content_type="image/x-icon",
        headers={"Cache-Control": "public, max-age=86400"},
    )


async def portal_redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/portal/")


async def ra_redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ra/")


_VERSIONS = web.AppKey("portal_static_versions", dict)


def setup_portal(app: web.Application) -> None:
    """Register the pages, /static/ and the security-header middleware on ``app``."""
    app[_VERSIONS] = {
        name: _version(name) for name in ("portal.js", "portal-legacy.js", "portal.css")
    }
    app.middlewares.insert(0, security_headers)  # outermost: error bodies get it too
    r = app.router
    r.add_get("/", login_page)
    r.add_get("/favicon.ico", favicon)
    r.add_get("/portal", portal_redirect)
    r.add_get("/portal/", subscriber_page)
    r.add_get("/portal/{page:[a-z]+}", subscriber_page)
    r.add_get("/ra", ra_redirect)
    r.add_get("/ra/", ra_login_page)
    r.add_get("/ra/{page:[a-z]+}", ra_page)
    r.add_static("/static/", STATIC, show_index=False, follow_symlinks=False, append_version=False)
