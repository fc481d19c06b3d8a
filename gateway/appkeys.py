"""The typed aiohttp application keys: what a handler may read with ``request.app[KEY]``.

The first four are set by ``make_app`` before start-up. Every other key belongs to one
resource or service and is set by the ``cleanup_ctx`` that builds it (``gateway/composition.py``),
so a key is present exactly while its resource is alive, and a handler or service names what it
depends on instead of reaching into one shared bag.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.clock import Clock
from gateway.config import GatewayConfig
from signer.client import SignerOps

if TYPE_CHECKING:
    from gateway.captcha import CaptchaService
    from gateway.cmp.enrolment import EnrolmentSecrets
    from gateway.cmp.server import CmpServer
    from gateway.metrics import GatewayMetrics
    from gateway.services.accounts import AccountService
    from gateway.services.crl import CrlService
    from gateway.services.issuance import IssuanceService
    from gateway.services.issuers import IssuerRegistry
    from gateway.services.notices import NoticeService
    from gateway.services.ocsp import OcspResponder
    from gateway.services.officer_factors import OfficerFactors
    from gateway.services.officers import OfficerService
    from gateway.services.passwords import Passwords
    from gateway.services.ratelimit import RateLimiter
    from gateway.services.registration import RegistrationService
    from gateway.services.renewal import RenewalService
    from gateway.services.revocation import RevocationService
    from gateway.services.sessions import SessionStore


# set by make_app
CONFIG = web.AppKey("config", GatewayConfig)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
REGISTRY = web.AppKey("registry", CollectorRegistry)
METRICS: web.AppKey[GatewayMetrics] = web.AppKey("metrics")

# resources
DB = web.AppKey("db", asyncpg.Pool)
SIGNER: web.AppKey[SignerOps] = web.AppKey("signer")

# subscriber and officer services
PASSWORDS: web.AppKey[Passwords] = web.AppKey("passwords")
SESSIONS: web.AppKey[SessionStore] = web.AppKey("sessions")
CAPTCHA: web.AppKey[CaptchaService | None] = web.AppKey("captcha")  # None: captcha off
RATELIMITS: web.AppKey[RateLimiter] = web.AppKey("ratelimits")  # shared buckets in PostgreSQL
ACCOUNTS: web.AppKey[AccountService] = web.AppKey("accounts")
REGISTRATION: web.AppKey[RegistrationService] = web.AppKey("registration")
OFFICERS: web.AppKey[OfficerService] = web.AppKey("officers")  # list, unlock
OFFICER_FACTORS: web.AppKey[OfficerFactors] = web.AppKey("officer_factors")  # second factor

# certificate lifecycle services
ISSUERS: web.AppKey[IssuerRegistry] = web.AppKey("issuers")
ISSUANCE: web.AppKey[IssuanceService] = web.AppKey("issuance")
RENEWAL: web.AppKey[RenewalService] = web.AppKey("renewal")
REVOCATION: web.AppKey[RevocationService] = web.AppKey("revocation")
CRL: web.AppKey[CrlService] = web.AppKey("crl")
OCSP: web.AppKey[OcspResponder] = web.AppKey("ocsp")
NOTICES: web.AppKey[NoticeService] = web.AppKey("notices")

# CMP (gateway/cmp/routes.py)
CMP_SERVER: web.AppKey[CmpServer] = web.AppKey("cmp_server")
CMP_SECRETS: web.AppKey[EnrolmentSecrets] = web.AppKey("cmp_secrets")

# per-request values (request[...])
REQUEST_ID = web.RequestKey("request_id", str)
