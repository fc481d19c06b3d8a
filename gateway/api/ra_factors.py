"""RA officers' second factor: enrolment (WebAuthn, TOTP), the list of factors, and the step
that completes an officer login after the password (``gateway.services.officer_factors``).

Every route here also takes a session whose second factor is still due (the officer needs
them to get past it); the service decides what such a session may do.
"""

from __future__ import annotations

from aiohttp import web

from db.queries.officer_factors import Factor
from gateway import appkeys
from gateway.api import common, decode, models, present
from gateway.api.common import json_response
from gateway.errors import ApiError, Kind
from gateway.services.accounts import OfficerAuth
from gateway.services.officer_factors import Enrolled
from gateway.services.sessions import NewSession

routes = web.RouteTableDef()
DEFAULT_NAMES = {"webauthn": "security key", "totp": "authenticator app"}


def _factor(f: Factor) -> models.Factor:
    return models.Factor(
        id=f.id,
        kind=f.kind,
        name=f.name,
        created_at=present.rfc3339(f.created_at),
        last_used_at=present.rfc3339(f.last_used_at) if f.last_used_at else None,
    )


def _new_session(request: web.Request, response: web.Response, new: NewSession | None) -> None:
    if new is not None:
        common.set_session_cookie(request, response, common.OFFICER_COOKIE, new.token)


async def _auth(request: web.Request) -> OfficerAuth:
    return await common.officer(request, second_factor_pending=True)


@routes.get("/api/v1/ra/factors")
async def list_factors(request: web.Request) -> web.Response:
    auth = await _auth(request)
    service = request.app[appkeys.OFFICER_FACTORS]
    factors = await service.list(auth)
    return json_response(
        models.Factors(
            factors=[_factor(f) for f in factors],
            policy=service.policy,  # type: ignore[arg-type]
            second_factor=auth.second_factor,
        )
    )  # type: ignore[arg-type]


def _enrolled(request: web.Request, done: Enrolled) -> web.Response:
    """201 with the new factor; when it completed an ``enrol`` login, the fresh session too."""
    response = json_response(
        models.Enrolled(
            factor=_factor(done.factor),
            csrf_token=done.session.csrf_token if done.session else None,
        ),
        status=201,
    )
    _new_session(request, response, done.session)
    return response


@routes.post("/api/v1/ra/factors/webauthn/options")
async def webauthn_enrol_options(request: web.Request) -> web.Response:
    auth = await _auth(request)
    challenge_id, options = await request.app[appkeys.OFFICER_FACTORS].webauthn_enrol_options(auth)
    return json_response(
        models.WebAuthnOptions(challenge_id=challenge_id, options=options),
        headers={"Cache-Control": "no-store"},
    )


@routes.post("/api/v1/ra/factors/webauthn")
async def webauthn_enrol(request: web.Request) -> web.Response:
    auth = await _auth(request)
    body = await decode.body(request, models.WebAuthnEnrol)
    done = await request.app[appkeys.OFFICER_FACTORS].webauthn_enrol(
        auth,
        challenge_id=body.challenge_id,
        credential=body.credential,
        name=body.name.strip() or DEFAULT_NAMES["webauthn"],
    )
    return _enrolled(request, done)


@routes.post("/api/v1/ra/factors/totp/secret")
async def totp_secret(request: web.Request) -> web.Response:
    auth = await _auth(request)
    challenge_id, secret, uri = await request.app[appkeys.OFFICER_FACTORS].totp_enrol_start(auth)
    return json_response(
        models.TotpSecret(challenge_id=challenge_id, secret=secret, uri=uri),
        headers={"Cache-Control": "no-store"},
    )


@routes.post("/api/v1/ra/factors/totp")
async def totp_enrol(request: web.Request) -> web.Response:
    auth = await _auth(request)
    body = await decode.body(request, models.TotpEnrol)
    done = await request.app[appkeys.OFFICER_FACTORS].totp_enrol(
        auth,
        challenge_id=body.challenge_id,
        code=body.code,
        name=body.name.strip() or DEFAULT_NAMES["totp"],
    )
    return _enrolled(request, done)


@routes.post("/api/v1/ra/session/webauthn-options")
async def webauthn_login_options(request: web.Request) -> web.Response:
    auth = await _auth(request)
    challenge_id, options = await request.app[appkeys.OFFICER_FACTORS].webauthn_login_options(auth)
    return json_response(
        models.WebAuthnOptions(challenge_id=challenge_id, options=options),
        headers={"Cache-Control": "no-store"},
    )


@routes.post("/api/v1/ra/session/second-factor")
async def second_factor(request: web.Request) -> web.Response:
    auth = await _auth(request)
    body = await decode.body(request, models.SecondFactor)
    webauthn = body.challenge_id is not None or body.credential is not None
    if webauthn == (body.totp_code is not None):
        raise ApiError(
            Kind.INVALID_FIELD,
            "give either challenge_id + credential or totp_code",
            field="totp_code",
        )
    if webauthn and (body.challenge_id is None or body.credential is None):
        missing = "credential" if body.credential is None else "challenge_id"
        raise ApiError(Kind.INVALID_FIELD, f"{missing} is required with WebAuthn", field=missing)
    new = await request.app[appkeys.OFFICER_FACTORS].complete(
        auth,
        challenge_id=body.challenge_id,
        credential=body.credential,
        totp_code=body.totp_code,
        client=common.client_address(request),
    )
    response = json_response(models.SecondFactorResult(csrf_token=new.csrf_token))
    _new_session(request, response, new)
    return response
