"""RA officers under /api/v1/ra/officers: the list, and unlocking a locked officer
(docs/API-extensions.md). The logic is in ``gateway.services.officers``."""

from __future__ import annotations

from aiohttp import web

from db.queries.officers import Officer
from gateway import appkeys
from gateway.api import common, decode, models
from gateway.api.common import json_response

routes = web.RouteTableDef()


def officer_object(o: Officer) -> models.OfficerEntry:
    return models.OfficerEntry(
        login=o.login, locked=o.locked, failed_attempts=o.failed_attempts, can_unlock=o.can_unlock
    )


@routes.get("/api/v1/ra/officers")
async def list_officers(request: web.Request) -> web.Response:
    await common.officer(request)
    found = await request.app[appkeys.OFFICERS].list()
    return json_response(models.Officers(officers=[officer_object(o) for o in found]))


@routes.post("/api/v1/ra/officers/{login}/unlock")
async def unlock(request: web.Request) -> web.Response:
    auth = await common.officer(request)
    login = decode.path_login(request)
    return json_response(officer_object(await request.app[appkeys.OFFICERS].unlock(auth, login)))
