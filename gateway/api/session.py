"""Subscriber session, password change, own data and the terms of use."""

from __future__ import annotations

from aiohttp import web

from gateway import appkeys, terms
from gateway.api import common, decode, models
from gateway.api.common import json_response
from gateway.services.sessions import csrf_for

routes = web.RouteTableDef()


@routes.post("/api/v1/session")
async def login(request: web.Request) -> web.Response:
    body = await decode.body(request, models.Login)
    captcha_id = body.captcha_id or ""
    captcha_answer = body.captcha_answer or ""
    if request.app[appkeys.CAPTCHA] is None:
        captcha_id = captcha_answer = ""
    result = await request.app[appkeys.ACCOUNTS].login(
        account=body.account,
        password=body.password,
        captcha_id=captcha_id,
        captcha_answer=captcha_answer,
        previous_token=common.session_token(request, common.SUBSCRIBER_COOKIE),
        client=common.client_address(request),
    )
    response = json_response(
        models.LoginResult(
            csrf_token=result.session.csrf_token, must_change_password=result.must_change_password
        )
    )
    common.set_session_cookie(request, response, common.SUBSCRIBER_COOKIE, result.session.token)
    return response


@routes.get("/api/v1/session")
async def current_session(request: web.Request) -> web.Response:
    """The session's CSRF token again, for a tab that did not see the login answer (a second or
    restored tab: the token lives in one tab's sessionStorage). 401 without a live session."""
    auth = await common.subscriber(request, during_forced_change=True)
    token = common.session_token(request, common.SUBSCRIBER_COOKIE) or ""
    return json_response(
        models.LoginResult(
            csrf_token=csrf_for(token), must_change_password=auth.account.must_change_password
        ),
        headers={"Cache-Control": "no-store"},
    )


@routes.delete("/api/v1/session")
async def logout(request: web.Request) -> web.Response:
    auth = await common.subscriber(request, during_forced_change=True)
    await request.app[appkeys.ACCOUNTS].logout(auth)
    response = web.Response(status=204)
    common.clear_session_cookie(request, response, common.SUBSCRIBER_COOKIE)
    return response


@routes.post("/api/v1/password")
async def change_password(request: web.Request) -> web.Response:
    auth = await common.subscriber(request, during_forced_change=True)
    body = await decode.body(request, models.PasswordChange)
    await request.app[appkeys.ACCOUNTS].change_password(
        auth, old=body.old_password, new=body.new_password, client=common.client_address(request)
    )
    return web.Response(status=204)


@routes.get("/api/v1/me")
async def me(request: web.Request) -> web.Response:
    auth = await common.subscriber(request, during_forced_change=True)
    view = await request.app[appkeys.ACCOUNTS].me(auth)
    s = view.subscriber
    return json_response(
        models.Me(
            account=view.account.account,
            id_number=s.id_number,
            name=s.name,
            subscriber_name=s.subject_cn,
            email=s.email,
            phone=s.phone,
            address=s.address,
            usages=list(s.usages),
        )
    )


@routes.get("/api/v1/terms")
async def get_terms(request: web.Request) -> web.Response:
    await common.subscriber(request, during_forced_change=True)
    days = request.app[appkeys.CONFIG].renewal_window_days
    return json_response(models.Terms(version=terms.VERSION, text=terms.text(days)))
