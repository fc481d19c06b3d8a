"""RA officers under /api/v1/ra/officers: the list, and unlocking a locked officer
(docs/API-extensions.md). The logic is in ``gateway.services.officers``."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from db.queries.officers import Officer
from gateway import keys
from gateway.api import common
from gateway.api.common import json_response
from gateway.errors import ApiError, Kind

routes = web.RouteTableDef()
_LOGIN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")  # the ra_officers.login CHECK


def officer_object(o: Officer) -> dict[str, Any]:
    return {
        "login": o.login,
        "locked": o.locked,
        "failed_attempts": o.failed_attempts,
        "can_unlock": o.can_unlock,
    }


@routes.get("/api/v1/ra/officers")
async def list_officers(request: web.Request) -> web.Response:
    await common.officer(request)
    found = await keys.runtime(request).officers.list()
    return json_response({"officers": [officer_object(o) for o in found]})


@routes.post("/api/v1/ra/officers/{login}/unlock")
async def unlock(request: web.Request) -> web.Response:
    auth = await common.officer(request)
    login = request.match_info["login"]
    if not _LOGIN.match(login):
        raise ApiError(Kind.NOT_FOUND, "no such officer")
    return json_response(officer_object(await keys.runtime(request).officers.unlock(auth, login)))
