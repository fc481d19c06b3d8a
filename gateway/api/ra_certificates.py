"""RA officer: revoke a certificate by serial, with an RFC 5280 reason."""

from __future__ import annotations

from aiohttp import web

from gateway import keys
from gateway.api import common
from gateway.api.common import json_response
from gateway.services.certificates import certificate_object
from gateway.services.lifecycle import lifecycle

routes = web.RouteTableDef()


@routes.post("/api/v1/ra/certificates/{serial}/revocation")
async def revoke(request: web.Request) -> web.Response:
    auth = await common.officer(request)
    data = await common.read_json(request)
    row = await lifecycle(request).revocation.revoke(
        serial=request.match_info["serial"], reason=data.get("reason"),
        officer_id=auth.officer.id, officer_login=auth.officer.login,
    )
    return json_response(certificate_object(row, request.app[keys.CLOCK](),
                                            request.app[keys.CONFIG].renewal_window_days))
