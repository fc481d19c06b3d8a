"""RA officer API under /api/v1/ra: session, registration (password slip), search, view,
password reset, audit log.

The password slip: ``POST /api/v1/ra/subscribers`` and ``POST .../password-reset`` answer JSON
by default and the printable zh-TW slip page (``text/html``) when the request's ``Accept``
header asks for ``text/html`` before JSON; the slip is rendered from the same transaction's
result, since the initial password is stored only as a hash.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from db.queries.certificates import CertificateRow
from db.queries.subscribers import NewSubscriber, SubscriberView
from gateway import keys
from gateway.api import common
from gateway.api.common import invalid, json_response, text_field
from gateway.errors import ApiError, Kind
from gateway.services.certificates import certificate_object
from gateway.services.registration import Slip
from gateway.services.sessions import csrf_for

routes = web.RouteTableDef()
USAGES = ("signing", "encryption")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent.parent / "portal" /
                                   "templates"),
    autoescape=True,
)


@routes.post("/api/v1/ra/session")
async def login(request: web.Request) -> web.Response:
    data = await common.read_json(request)
    login_name = text_field(data, "login", max_len=64)
    password = text_field(data, "password", max_len=256, allow_control=True)
    new = await keys.runtime(request).accounts.officer_login(
        login=login_name, password=password,
        previous_token=request.cookies.get(common.OFFICER_COOKIE),
        client=common.client_address(request),
    )
    response = json_response({"csrf_token": new.csrf_token})
    common.set_session_cookie(request, response, common.OFFICER_COOKIE, new.token)
    return response


@routes.get("/api/v1/ra/session")
async def current_session(request: web.Request) -> web.Response:
    """The officer session's CSRF token and login, for any tab of the browser holding it."""
    token = request.cookies.get(common.OFFICER_COOKIE)
    auth = await common.officer(request)
    return json_response({"csrf_token": csrf_for(token or ""), "login": auth.officer.login},
                         headers={"Cache-Control": "no-store"})


@routes.delete("/api/v1/ra/session")
async def logout(request: web.Request) -> web.Response:
    auth = await common.officer(request)
    await keys.runtime(request).accounts.logout(auth)
    response = web.Response(status=204)
    common.clear_session_cookie(request, response, common.OFFICER_COOKIE)
    return response


def _parse_subscriber(data: dict[str, Any]) -> NewSubscriber:
    id_number = text_field(data, "id_number", max_len=64)
    name = text_field(data, "name", max_len=200)
    email = text_field(data, "email", max_len=254)
    if not _EMAIL.match(email):
        raise invalid("email", "email is not an e-mail address")
    phone = text_field(data, "phone", required=False, max_len=64)
    address = text_field(data, "address", required=False, max_len=500)
    subject = data.get("subject")
    if not isinstance(subject, dict):
        raise invalid("subject", "subject must be an object with at least cn")
    cn = text_field(subject, "cn", max_len=64)
    o = text_field(subject, "o", required=False, max_len=64)
    c = text_field(subject, "c", required=False, max_len=2, default="TW").upper() or "TW"
    if not _COUNTRY.match(c):
        raise invalid("subject.c", "subject.c must be a two-letter country code")
    ou_raw = subject.get("ou", [])
    if ou_raw is None:
        ou_raw = []
    if isinstance(ou_raw, str):
        ou_raw = [ou_raw]
    if not isinstance(ou_raw, list) or len(ou_raw) > 8:
        raise invalid("subject.ou", "subject.ou must be a list of at most 8 strings")
    ou = tuple(text_field({"ou": v}, "ou", max_len=64) for v in ou_raw)
    usages_raw = data.get("usages")
    if (not isinstance(usages_raw, list) or not usages_raw
            or not all(isinstance(u, str) and u in USAGES for u in usages_raw)):
        raise invalid("usages", 'usages must be a non-empty list of "signing", "encryption"')
    usages = tuple(dict.fromkeys(usages_raw))
    return NewSubscriber(id_number=id_number, name=name, email=email, phone=phone,
                         address=address, subject_cn=cn, subject_ou=ou, subject_o=o,
                         subject_c=c, usages=usages)


def _wants_html(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    html = accept.find("text/html")
    js = accept.find("application/json")
    return html >= 0 and (js < 0 or html < js)


def _slip_response(request: web.Request, slip: Slip, *, status: int, reset: bool
                   ) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if _wants_html(request):
        page = _TEMPLATES.get_template("password_slip.html").render(
            slip=slip, reset=reset, portal_url=request.app[keys.CONFIG].public_url,
            issued_at=common.rfc3339(request.app[keys.CLOCK]()),
            password_min=request.app[keys.CONFIG].password_min,
            password_max=request.app[keys.CONFIG].password_max,
        )
        return web.Response(text=page, status=status, content_type="text/html",
                            charset="utf-8", headers=headers)
    body: dict[str, Any] = {"account": slip.account, "initial_password": slip.initial_password}
    if not reset:
        body = {"subscriber_id": slip.subscriber_id, **body}
    return json_response(body, status=status, headers=headers)


@routes.post("/api/v1/ra/subscribers")
async def register(request: web.Request) -> web.Response:
    auth = await common.officer(request)
    new = _parse_subscriber(await common.read_json(request))
    slip = await keys.runtime(request).registration.register(
        new, officer_id=auth.officer.id, officer_login=auth.officer.login
    )
    return _slip_response(request, slip, status=201, reset=False)


def _subscriber_object(request: web.Request, view: SubscriberView,
                       certs: list[CertificateRow]) -> dict[str, Any]:
    s, a = view.subscriber, view.account
    now = request.app[keys.CLOCK]()
    window = request.app[keys.CONFIG].renewal_window_days
    return {
        "subscriber_id": s.id,
        "account": a.account,
        "id_number": s.id_number,
        "name": s.name,
        "email": s.email,
        "phone": s.phone,
        "address": s.address,
        "subject": {"cn": s.subject_cn, "ou": list(s.subject_ou), "o": s.subject_o,
                    "c": s.subject_c},
        "usages": list(s.usages),
        "locked": a.locked,
        "failed_attempts": a.failed_attempts,
        "must_change_password": a.must_change_password,
        "certificates": [certificate_object(c, now, window) for c in certs],
    }


@routes.get("/api/v1/ra/subscribers")
async def search(request: web.Request) -> web.Response:
    await common.officer(request)
    q = request.query.get("q", "")
    if len(q) > 200 or re.search(r"[\x00-\x1f\x7f]", q):
        raise invalid("q", "q must be at most 200 printable characters")
    found = await keys.runtime(request).registration.search(q.strip())
    return json_response({"subscribers": [_subscriber_object(request, v, c) for v, c in found]})


def _subscriber_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ApiError(Kind.NOT_FOUND, "no such subscriber")
    return int(raw)


@routes.get("/api/v1/ra/subscribers/{id}")
async def view(request: web.Request) -> web.Response:
    await common.officer(request)
    found, certs = await keys.runtime(request).registration.view(_subscriber_id(request))
    return json_response(_subscriber_object(request, found, certs))


@routes.post("/api/v1/ra/subscribers/{id}/password-reset")
async def password_reset(request: web.Request) -> web.Response:
    auth = await common.officer(request)
    slip = await keys.runtime(request).registration.reset_password(
        _subscriber_id(request), officer_login=auth.officer.login
    )
    return _slip_response(request, slip, status=200, reset=True)


def _newest_first(request: web.Request) -> bool:
    """``order=desc`` (an extension of API.md): newest first, paged with ``before_id``."""
    order = request.query.get("order", "asc")
    if order not in ("asc", "desc"):
        raise invalid("order", 'order must be "asc" or "desc"')
    return order == "desc"


@routes.get("/api/v1/ra/audit")
async def audit_log(request: web.Request) -> web.Response:
    await common.officer(request)
    after_id = common.int_param(request, "after_id", 0, minimum=0, maximum=2**62)
    limit = common.int_param(request, "limit", 100, minimum=1, maximum=1000)
    registration = keys.runtime(request).registration
    if _newest_first(request):
        before_id = common.int_param(request, "before_id", 0, minimum=0, maximum=2**62)
        events = await registration.audit_events_newest_first(before_id=before_id, limit=limit)
    else:
        events = await registration.audit_events(after_id=after_id, limit=limit)
    return json_response({"events": [
        {"id": e.id, "at": common.rfc3339(e.at), "actor": e.actor, "action": e.action,
         "target": e.target, "details": e.details}
        for e in events
    ]})
