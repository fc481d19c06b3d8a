"""RA officer: revoke a certificate by serial, with an RFC 5280 reason."""

from __future__ import annotations

from aiohttp import web

from gateway import appkeys
from gateway.api import common, decode, models
from gateway.api.common import json_response

routes = web.RouteTableDef()


@routes.post("/api/v1/ra/certificates/{serial}/revocation")
async def revoke(request: web.Request) -> web.Response:
    auth = await common.officer(request)
    serial = decode.path_serial(request)
    body = await decode.body(request, models.Revocation)
    row = await request.app[appkeys.REVOCATION].revoke(
        serial=serial,
        reason=body.reason,
        officer_id=auth.officer.id,
        officer_login=auth.officer.login,
    )
    return json_response(common.certificate(request, row))
