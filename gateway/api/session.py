"""Subscriber session, password change, own data and the terms of use."""

from __future__ import annotations

from aiohttp import web

from gateway import keys, terms
from gateway.api import common
from gateway.api.common import json_response, text_field

routes = web.RouteTableDef()
MAX_PASSWORD = 256  # far above the policy; only keeps Argon2 input bounded


@routes.post("/api/v1/session")
async def login(request: web.Request) -> web.Response:
    data = await common.read_json(request)
    account = text_field(data, "account", max_len=64)
    password = text_field(data, "password", max_len=MAX_PASSWORD, allow_control=True)
    captcha_on = keys.runtime(request).captcha is not None
    captcha_id = text_field(data, "captcha_id", required=False, max_len=64)
    captcha_answer = text_field(data, "captcha_answer", required=False, max_len=32)
    if not captcha_on:
        captcha_id = captcha_answer = ""
    result = await keys.runtime(request).accounts.login(
        account=account, password=password, captcha_id=captcha_id,
        captcha_answer=captcha_answer,
        previous_token=common.session_token(request, common.SUBSCRIBER_COOKIE),
        client=common.client_address(request),
    )
    response = json_response({"csrf_token": result.session.csrf_token,
                              "must_change_password": result.must_change_password})
    common.set_session_cookie(request, response, common.SUBSCRIBER_COOKIE, result.session.token)
    return response


@routes.delete("/api/v1/session")
async def logout(request: web.Request) -> web.Response:
    auth = await common.subscriber(request, during_forced_change=True)
    await keys.runtime(request).accounts.logout(auth)
    response = web.Response(status=204)
    common.clear_session_cookie(request, response, common.SUBSCRIBER_COOKIE)
    return response


@routes.post("/api/v1/password")
async def change_password(request: web.Request) -> web.Response:
    auth = await common.subscriber(request, during_forced_change=True)
    data = await common.read_json(request)
    old = text_field(data, "old_password", max_len=MAX_PASSWORD, allow_control=True)
    new = text_field(data, "new_password", max_len=MAX_PASSWORD, allow_control=True,
                     min_len=0)
    await keys.runtime(request).accounts.change_password(
        auth, old=old, new=new, client=common.client_address(request))
    return web.Response(status=204)


@routes.get("/api/v1/me")
async def me(request: web.Request) -> web.Response:
    auth = await common.subscriber(request, during_forced_change=True)
    view = await keys.runtime(request).accounts.me(auth)
    s = view.subscriber
    return json_response({
        "account": view.account.account,
        "id_number": s.id_number,
        "name": s.name,
        "subscriber_name": s.subject_cn,
        "email": s.email,
        "phone": s.phone,
        "address": s.address,
        "usages": list(s.usages),
    })


@routes.get("/api/v1/terms")
async def get_terms(request: web.Request) -> web.Response:
    await common.subscriber(request, during_forced_change=True)
    return json_response({"version": terms.VERSION, "text": terms.TEXT})
