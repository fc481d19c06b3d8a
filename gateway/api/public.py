"""Public endpoints: health, readiness, metrics, captcha, OpenAPI."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from gateway import keys
from gateway.api.common import json_response
from gateway.api.openapi import spec
from gateway.errors import ApiError, Kind

routes = web.RouteTableDef()
log = logging.getLogger("gateway.public")
READY_TIMEOUT = 2.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    problems: dict[str, str] = {}
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await keys.runtime(request).db.fetchval("SELECT 1")
    except Exception as exc:  # any failure means "not ready"
        problems["database"] = type(exc).__name__
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await keys.runtime(request).signer.health()
    except Exception as exc:
        problems["signer"] = getattr(exc, "message", None) or type(exc).__name__
    if problems:
        return json_response(
            {"error": Kind.NOT_READY.value, "message": "not ready", "checks": problems},
            status=503,
        )
    return json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[keys.REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


@routes.get("/api/v1/captcha")
async def captcha(request: web.Request) -> web.Response:
    service = keys.runtime(request).captcha
    if service is None:
        raise ApiError(Kind.CAPTCHA_DISABLED, "the captcha is switched off on this server")
    challenge = await service.create(keys.runtime(request).db)
    return json_response({"captcha_id": challenge.id, "image": challenge.data_url},
                         headers={"Cache-Control": "no-store"})


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(spec(request.app[keys.CONFIG].public_url))
