"""Typed application keys: everything a handler needs comes from here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.config import GatewayConfig
from signer.client import SignerOps

if TYPE_CHECKING:
    from gateway.captcha import CaptchaService
    from gateway.services.accounts import AccountService
    from gateway.services.lifecycle import Lifecycle
    from gateway.services.officer_factors import OfficerFactors
    from gateway.services.officers import OfficerService
    from gateway.services.ratelimit import RateLimiter
    from gateway.services.registration import RegistrationService


SignerHealth = SignerOps  # the one signer Protocol, next to signer.client.SignerClient


Clock = Callable[[], datetime]


class Runtime:
    """Resources made at start-up (after the app is frozen), one ``cleanup_ctx`` each."""

    db: asyncpg.Pool
    signer: SignerHealth
    captcha: CaptchaService | None  # None: captcha switched off
    accounts: AccountService
    registration: RegistrationService
    ratelimits: RateLimiter  # [ratelimit]: shared token buckets in PostgreSQL
    officers: OfficerService  # officer list and unlock by an officer with the right
    lifecycle: Lifecycle  # issuance, renewal, revocation, CRL, OCSP, notices
    officer_factors: OfficerFactors  # RA officers' second factor


CONFIG = web.AppKey("config", GatewayConfig)
CLOCK = web.AppKey("clock", Clock)  # type: ignore[type-abstract]
REGISTRY = web.AppKey("registry", CollectorRegistry)
METRICS = web.AppKey("metrics", "GatewayMetrics")
RUNTIME = web.AppKey("runtime", Runtime)


def runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


# per-request values (request[...])
REQUEST_ID = web.RequestKey("request_id", str)
