"""RA officer API under /api/v1/ra: session, registration (password slip), search, view,
password reset, audit log.

The password slip: ``POST /api/v1/ra/subscribers`` and ``POST .../password-reset`` answer JSON
by default and the printable zh-TW slip page (``text/html``) when the request's ``Accept``
header asks for ``text/html`` before JSON; the slip is rendered from the same transaction's
result, since the initial password is stored only as a hash.
"""

from __future__ import annotations

from aiohttp import web

from db.queries.certificates import CertificateRow
from db.queries.subscribers import NewSubscriber, SubscriberView
from gateway import appkeys
from gateway.api import common, decode, models, present
from gateway.api.common import json_response
from gateway.portal.render import TEMPLATES
from gateway.services.registration import Slip
from gateway.services.sessions import csrf_for

routes = web.RouteTableDef()


@routes.post("/api/v1/ra/session")
async def login(request: web.Request) -> web.Response:
    body = await decode.body(request, models.OfficerLogin)
    new = await request.app[appkeys.ACCOUNTS].officer_login(
        login=body.login,
        password=body.password,
        previous_token=common.session_token(request, common.OFFICER_COOKIE),
        client=common.client_address(request),
    )
    # the second factor is a separate step (gateway.api.ra_factors): mark what is still due
    second_factor = await request.app[appkeys.OFFICER_FACTORS].gate(new)
    response = json_response(
        models.OfficerLoginResult(csrf_token=new.csrf_token, second_factor=second_factor)
    )
    common.set_session_cookie(request, response, common.OFFICER_COOKIE, new.token)
    return response


@routes.get("/api/v1/ra/session")
async def current_session(request: web.Request) -> web.Response:
    """The officer session's CSRF token and login, for any tab of the browser holding it."""
    auth = await common.officer(request)
    token = common.session_token(request, common.OFFICER_COOKIE) or ""
    body = models.OfficerSession(csrf_token=csrf_for(token), login=auth.officer.login)
    return json_response(body, headers={"Cache-Control": "no-store"})


@routes.delete("/api/v1/ra/session")
async def logout(request: web.Request) -> web.Response:
    auth = await common.officer(request, second_factor_pending=True)
    await request.app[appkeys.ACCOUNTS].logout(auth)
    response = web.Response(status=204)
    common.clear_session_cookie(request, response, common.OFFICER_COOKIE)
    return response


def _new_subscriber(body: models.NewSubscriber) -> NewSubscriber:
    subject = body.subject
    return NewSubscriber(
        id_number=body.id_number,
        name=body.name,
        email=body.email,
        phone=body.phone or "",
        address=body.address or "",
        subject_cn=subject.cn,
        subject_ou=tuple(subject.ou or ()),
        subject_o=subject.o or "",
        subject_c=subject.c or "TW",
        usages=tuple(dict.fromkeys(body.usages)),
    )


def _wants_html(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    html = accept.find("text/html")
    js = accept.find("application/json")
    return html >= 0 and (js < 0 or html < js)


def _slip_response(request: web.Request, slip: Slip, *, status: int, reset: bool) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if _wants_html(request):
        page = TEMPLATES.get_template("password_slip.html").render(
            slip=slip,
            reset=reset,
            portal_url=request.app[appkeys.CONFIG].public_url,
            issued_at=present.rfc3339(request.app[appkeys.CLOCK]()),
            password_min=request.app[appkeys.CONFIG].password_min,
            password_max=request.app[appkeys.CONFIG].password_max,
        )
        return web.Response(
            text=page, status=status, content_type="text/html", charset="utf-8", headers=headers
        )
    body: models.Slip | models.ResetSlip = (
        models.ResetSlip(account=slip.account, initial_password=slip.initial_password)
        if reset
        else models.Slip(
            subscriber_id=slip.subscriber_id,
            account=slip.account,
            initial_password=slip.initial_password,
        )
    )
    return json_response(body, status=status, headers=headers)


@routes.post("/api/v1/ra/subscribers")
async def register(request: web.Request) -> web.Response:
    auth = await common.officer(request)
    new = _new_subscriber(await decode.body(request, models.NewSubscriber))
    slip = await request.app[appkeys.REGISTRATION].register(
        new, officer_id=auth.officer.id, officer_login=auth.officer.login
    )
    return _slip_response(request, slip, status=201, reset=False)


def _subscriber_object(
    request: web.Request, view: SubscriberView, certs: list[CertificateRow]
) -> models.Subscriber:
    s, a = view.subscriber, view.account
    return models.Subscriber(
        subscriber_id=s.id,
        account=a.account,
        id_number=s.id_number,
        name=s.name,
        email=s.email,
        phone=s.phone,
        address=s.address,
        subject=models.Subject(
            cn=s.subject_cn, ou=list(s.subject_ou), o=s.subject_o, c=s.subject_c
        ),
        usages=list(s.usages),
        locked=a.locked,
        failed_attempts=a.failed_attempts,
        must_change_password=a.must_change_password,
        certificates=[common.certificate(request, c) for c in certs],
    )


@routes.get("/api/v1/ra/subscribers")
async def search(request: web.Request) -> web.Response:
    await common.officer(request)
    query = decode.query(request, models.SearchQuery)
    found = await request.app[appkeys.REGISTRATION].search(query.q.strip())
    return json_response(
        models.Subscribers(subscribers=[_subscriber_object(request, v, c) for v, c in found])
    )


@routes.get("/api/v1/ra/subscribers/{id}")
async def view(request: web.Request) -> web.Response:
    await common.officer(request)
    found, certs = await request.app[appkeys.REGISTRATION].view(decode.path_id(request))
    return json_response(_subscriber_object(request, found, certs))


@routes.post("/api/v1/ra/subscribers/{id}/password-reset")
async def password_reset(request: web.Request) -> web.Response:
    auth = await common.officer(request)
    slip = await request.app[appkeys.REGISTRATION].reset_password(
        decode.path_id(request), officer_login=auth.officer.login
    )
    return _slip_response(request, slip, status=200, reset=True)


@routes.get("/api/v1/ra/audit")
async def audit_log(request: web.Request) -> web.Response:
    await common.officer(request)
    query = decode.query(request, models.AuditQuery)
    registration = request.app[appkeys.REGISTRATION]
    if query.order == "desc":  # an extension of API.md: newest first, paged with before_id
        events = await registration.audit_events_newest_first(
            before_id=query.before_id, limit=query.limit
        )
    else:
        events = await registration.audit_events(after_id=query.after_id, limit=query.limit)
    return json_response(
        models.AuditEvents(
            events=[
                models.AuditEvent(
                    id=e.id,
                    at=present.rfc3339(e.at),
                    actor=e.actor,
                    action=e.action,
                    target=e.target,
                    details=e.details,
                )
                for e in events
            ]
        )
    )
