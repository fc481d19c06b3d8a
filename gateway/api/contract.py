"""What each route of the HTTP contract takes and answers: the table the OpenAPI document is
generated from, next to the models of ``gateway.api.models``.

Keyed by (method, aiohttp canonical path), so ``gateway.api.openapi`` can walk the application's
router and a test can prove that every API route is described and every description is routed.
The error codes a route can answer follow from what it does (a body, a session, a path id), plus
the codes of its own checks listed here; API.md names them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from gateway.api import models

# subscriber-any: also while the password must be changed; officer-any: also while the
# officer's second factor is due (sessions marked by gateway.services.officer_factors)
Auth = Literal["none", "subscriber", "subscriber-any", "officer", "officer-any"]
JSON = "application/json"
PEM = "application/x-pem-file"
DER = "application/pkix-cert"
CMP = "application/pkixcmp"
BINARY: dict[str, Any] = {"type": "string", "format": "binary"}
TEXT: dict[str, Any] = {"type": "string"}


@dataclass(frozen=True)
class Param:
    """A path or query parameter with its JSON Schema."""

    name: str
    where: Literal["path", "query"]
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Ok:
    """A success answer: a model (JSON) or raw media types with their schemas."""

    status: int
    model: type | None = None
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = "success"


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    ok: tuple[Ok, ...]
    auth: Auth = "none"  # subscriber-any: also while the password must be changed
    body: type[msgspec.Struct] | None = None
    body_media: dict[str, dict[str, Any]] = field(default_factory=dict)  # non-JSON bodies
    params: tuple[Param, ...] = ()
    query: type[msgspec.Struct] | None = None
    errors: dict[int, tuple[str, ...]] = field(default_factory=dict)
    retry_later: bool = False  # 503 signer_unavailable with Retry-After
    database: bool = True  # 503 database_unavailable with Retry-After while the database is away

    def error_codes(self, method: str) -> dict[int, list[str]]:
        """Every (status, codes) this operation can answer, its own checks included."""
        out: dict[int, list[str]] = {}

        def add(status: int, *codes: str) -> None:
            out.setdefault(status, [])
            out[status].extend(c for c in codes if c not in out[status])

        if self.auth != "none":
            add(401, "unauthenticated")
            if method != "GET":
                add(403, "csrf_failed")
        if self.auth == "subscriber":
            add(403, "password_change_required")
        if self.auth == "officer":
            add(403, "second_factor_required")
        if self.body is not None or self.query is not None:
            add(400, "invalid_field")
        if self.body is not None:
            add(400, "bad_request")
        if self.body is not None or self.body_media:
            add(413, "too_large")
        if any(p.where == "path" for p in self.params):
            add(404, "not_found")
        for status, codes in self.errors.items():
            add(status, *codes)
        if self.retry_later:
            add(503, "signer_unavailable")
        if self.database:
            add(503, "database_unavailable")
        return dict(sorted(out.items()))


ID = models.ID_PATTERN
CERT_ID = Param("id", "path", {"type": "string", "pattern": ID}, "certificate id")
SUBSCRIBER_ID = Param("id", "path", {"type": "string", "pattern": ID}, "subscriber id")
SERIAL = Param(
    "serial", "path", {"type": "string", "pattern": models.SERIAL_PATTERN}, "lower-case hex serial"
)
ISSUER = Param(
    "name",
    "path",
    {"type": "string", "pattern": models.ISSUER_PATTERN},
    "issuer name (a label of the configuration)",
)
SLIP_HTML = {"text/html": TEXT}
CSR_CODES = ("bad_csr", "weak_key", "pop_failed", "terms_not_accepted")
# logins and password changes: over a [ratelimit] limit, or the Argon2 queue full (both with
# Retry-After; docs/API-extensions.md)
ABUSE: dict[int, tuple[str, ...]] = {429: ("rate_limited",), 503: ("busy",)}
OFFICER_LOGIN = Param(
    "login", "path", {"type": "string", "pattern": models.OFFICER_LOGIN_PATTERN}, "officer login"
)

OPERATIONS: dict[tuple[str, str], Operation] = {
    # -- public
    ("GET", "/healthz"): Operation("liveness", "public", (Ok(200, models.Health),), database=False),
    ("GET", "/readyz"): Operation(
        "readiness: the database and at least one signer answer",
        "public",
        (Ok(200, models.Ready),),
        errors={503: ("not_ready",)},
        database=False,  # answers not_ready instead
    ),
    ("GET", "/metrics"): Operation(
        "Prometheus metrics, text format 0.0.4",
        "public",
        (Ok(200, media={"text/plain": TEXT}),),
        database=False,
    ),
    ("GET", "/ca"): Operation(
        "the CA certificates this service publishes",
        "public",
        (Ok(200, models.Issuers),),
        database=False,
    ),
    ("GET", "/ca/chain.pem"): Operation(
        "the active issuing CA certificate(s), then the root",
        "public",
        (Ok(200, media={PEM: TEXT}),),
        database=False,
    ),
    ("GET", "/ca/{name}.crt"): Operation(
        "a CA certificate, DER",
        "public",
        (Ok(200, media={DER: BINARY}),),
        params=(ISSUER,),
        database=False,
    ),
    ("GET", "/crl/{name}.crl"): Operation(
        "the issuer's current CRL, DER",
        "public",
        (Ok(200, media={"application/pkix-crl": BINARY}),),
        params=(ISSUER,),
        retry_later=True,
    ),
    ("POST", "/ocsp"): Operation(
        "OCSP (RFC 6960). Errors are unsigned OCSP responses with HTTP 200: "
        "malformedRequest, unauthorized, tryLater",
        "public",
        (Ok(200, media={"application/ocsp-response": BINARY}),),
        body_media={"application/ocsp-request": BINARY},
    ),
    ("GET", "/ocsp/{request}"): Operation(
        "OCSP (RFC 6960 A.1): the URL-encoded base64 of the DER request in the path",
        "public",
        (Ok(200, media={"application/ocsp-response": BINARY}),),
        params=(Param("request", "path", TEXT, "base64 of the DER OCSPRequest"),),
    ),
    ("GET", "/api/v1/openapi.json"): Operation(
        "this document", "public", (Ok(200, media={JSON: {"type": "object"}}),), database=False
    ),
    ("GET", "/api/v1/captcha"): Operation(
        "a new single-use captcha",
        "public",
        (Ok(200, models.Captcha),),
        errors={404: ("captcha_disabled",), 429: ("rate_limited",)},
    ),
    ("GET", "/api/v1/captcha/audio"): Operation(
        "the captcha's audio alternative: spoken digits, a single-use challenge of its own",
        "public",
        (Ok(200, models.CaptchaAudio),),
        query=models.CaptchaAudioQuery,
        errors={404: ("captcha_disabled",), 503: ("speech_unavailable",)},
    ),
    # -- CMP (RFC 4210/9480 over HTTP per RFC 6712): every answer is a PKIMessage, errors too
    ("POST", "/.well-known/cmp"): Operation(
        "CMP request (ir, cr, p10cr, kur, rr, certConf, genm) for a signing certificate; "
        "the answer (ip, cp, kup, rp, pkiconf, genp or error) is a protected PKIMessage",
        "cmp",
        (Ok(200, media={CMP: BINARY}),),
        body_media={CMP: BINARY},
    ),
    ("POST", "/.well-known/cmp/p/{profile}"): Operation(
        "CMP request for the profile's usage (signing or encryption); unknown profiles get a "
        "CMP error (badRequest)",
        "cmp",
        (Ok(200, media={CMP: BINARY}),),
        body_media={CMP: BINARY},
        params=(Param("profile", "path", TEXT, "signing or encryption"),),
    ),
    # -- subscriber
    ("POST", "/api/v1/session"): Operation(
        "subscriber login; sets the session cookie",
        "subscriber",
        (Ok(200, models.LoginResult),),
        body=models.Login,
        errors={
            400: ("invalid_captcha",),
            401: ("invalid_credentials",),
            423: ("account_locked",),
            **ABUSE,
        },
    ),
    ("GET", "/api/v1/session"): Operation(
        "the session's CSRF token again, for any tab of the browser holding the cookie",
        "subscriber",
        (Ok(200, models.LoginResult),),
        auth="subscriber-any",
    ),
    ("DELETE", "/api/v1/session"): Operation(
        "logout", "subscriber", (Ok(204, description="logged out"),), auth="subscriber-any"
    ),
    ("POST", "/api/v1/password"): Operation(
        "change the portal password; the session stays valid",
        "subscriber",
        (Ok(204, description="changed"),),
        auth="subscriber-any",
        body=models.PasswordChange,
        errors={400: ("password_policy",), 401: ("invalid_credentials",), **ABUSE},
    ),
    ("GET", "/api/v1/me"): Operation(
        "own registration data", "subscriber", (Ok(200, models.Me),), auth="subscriber-any"
    ),
    ("GET", "/api/v1/terms"): Operation(
        "the current terms of use", "subscriber", (Ok(200, models.Terms),), auth="subscriber-any"
    ),
    ("POST", "/api/v1/certificates"): Operation(
        "apply for a certificate",
        "subscriber",
        (
            Ok(201, models.Certificate),
            Ok(
                200,
                models.Certificate,
                description="a retry of an application (same subscriber, usage and public key) "
                "whose earlier attempt was issued: that certificate",
            ),
        ),
        auth="subscriber",
        body=models.Apply,
        retry_later=True,
        errors={400: CSR_CODES, 403: ("usage_not_allowed",), 409: ("already_has_valid",)},
    ),
    ("GET", "/api/v1/certificates"): Operation(
        "own certificates", "subscriber", (Ok(200, models.Certificates),), auth="subscriber"
    ),
    ("GET", "/api/v1/certificates/{id}"): Operation(
        "one own certificate",
        "subscriber",
        (Ok(200, models.Certificate),),
        auth="subscriber",
        params=(CERT_ID,),
    ),
    ("GET", "/api/v1/certificates/{id}/certificate"): Operation(
        "download: PEM by default, DER with Accept: application/pkix-cert; marks it downloaded",
        "subscriber",
        (Ok(200, media={PEM: TEXT, DER: BINARY}),),
        auth="subscriber",
        params=(CERT_ID,),
    ),
    ("GET", "/api/v1/certificates/{id}/renewal"): Operation(
        "a renewal challenge: single use, 5 minutes, bound to this certificate",
        "subscriber",
        (Ok(200, models.Challenge),),
        auth="subscriber",
        params=(CERT_ID,),
        errors={409: ("not_renewable",)},
    ),
    ("POST", "/api/v1/certificates/{id}/renewal"): Operation(
        "renew with the old key's signature over challenge ‖ csr_der",
        "subscriber",
        (Ok(201, models.Certificate),),
        auth="subscriber",
        body=models.Renew,
        params=(CERT_ID,),
        retry_later=True,
        errors={
            400: ("bad_challenge", "key_reuse", *CSR_CODES),
            409: ("not_renewable", "already_has_valid"),
        },
    ),
    # -- RA officer
    ("POST", "/api/v1/ra/session"): Operation(
        "RA officer login; sets the officer session cookie",
        "ra",
        (Ok(200, models.OfficerLoginResult),),
        body=models.OfficerLogin,
        errors={401: ("invalid_credentials",), 423: ("account_locked",), **ABUSE},
    ),
    ("GET", "/api/v1/ra/session"): Operation(
        "the officer session's CSRF token and login, for any tab of the browser",
        "ra",
        (Ok(200, models.OfficerSession),),
        auth="officer",
    ),
    ("DELETE", "/api/v1/ra/session"): Operation(
        "RA officer logout", "ra", (Ok(204, description="logged out"),), auth="officer-any"
    ),
    # -- RA officer second factor (docs/API-extensions.md)
    ("POST", "/api/v1/ra/session/webauthn-options"): Operation(
        "a WebAuthn login challenge for an officer whose second factor is due",
        "ra",
        (Ok(200, models.WebAuthnOptions),),
        auth="officer-any",
        errors={409: ("second_factor_not_due", "not_enrolled")},
    ),
    ("POST", "/api/v1/ra/session/second-factor"): Operation(
        "complete the officer login with a WebAuthn assertion or a TOTP code; "
        "replaces the session (new cookie)",
        "ra",
        (Ok(200, models.SecondFactorResult),),
        auth="officer-any",
        body=models.SecondFactor,
        errors={
            400: ("bad_challenge",),
            401: ("second_factor_failed",),
            409: ("second_factor_not_due",),
            423: ("account_locked",),
        },
    ),
    ("GET", "/api/v1/ra/factors"): Operation(
        "the officer's enrolled second factors and what the session still needs",
        "ra",
        (Ok(200, models.Factors),),
        auth="officer-any",
    ),
    ("POST", "/api/v1/ra/factors/webauthn/options"): Operation(
        "a WebAuthn enrolment challenge (not while a second factor is due)",
        "ra",
        (Ok(200, models.WebAuthnOptions),),
        auth="officer-any",
        errors={403: ("second_factor_required",)},
    ),
    ("POST", "/api/v1/ra/factors/webauthn"): Operation(
        "enrol a WebAuthn authenticator (attestation none)",
        "ra",
        (Ok(201, models.Enrolled),),
        auth="officer-any",
        body=models.WebAuthnEnrol,
        errors={
            400: ("bad_challenge", "factor_rejected"),
            403: ("second_factor_required",),
            409: ("duplicate",),
        },
    ),
    ("POST", "/api/v1/ra/factors/totp/secret"): Operation(
        "a new TOTP secret to enrol (not while a second factor is due)",
        "ra",
        (Ok(200, models.TotpSecret),),
        auth="officer-any",
        errors={403: ("second_factor_required",)},
    ),
    ("POST", "/api/v1/ra/factors/totp"): Operation(
        "enrol the TOTP secret with a code made from it",
        "ra",
        (Ok(201, models.Enrolled),),
        auth="officer-any",
        body=models.TotpEnrol,
        errors={400: ("bad_challenge", "factor_rejected"), 403: ("second_factor_required",)},
    ),
    ("POST", "/api/v1/ra/subscribers"): Operation(
        "register a subscriber: the password slip as JSON, or the printable zh-TW slip page "
        "with Accept: text/html",
        "ra",
        (Ok(201, models.Slip, media=SLIP_HTML, description="the password slip"),),
        auth="officer",
        body=models.NewSubscriber,
        errors={409: ("duplicate",)},
    ),
    ("GET", "/api/v1/ra/subscribers"): Operation(
        "search subscribers",
        "ra",
        (Ok(200, models.Subscribers),),
        auth="officer",
        query=models.SearchQuery,
    ),
    ("GET", "/api/v1/ra/subscribers/{id}"): Operation(
        "one subscriber with its certificates",
        "ra",
        (Ok(200, models.Subscriber),),
        auth="officer",
        params=(SUBSCRIBER_ID,),
    ),
    ("POST", "/api/v1/ra/subscribers/{id}/password-reset"): Operation(
        "a new slip password: unlocks, forces a change at the next login",
        "ra",
        (Ok(200, models.ResetSlip, media=SLIP_HTML, description="the password slip"),),
        auth="officer",
        params=(SUBSCRIBER_ID,),
    ),
    ("POST", "/api/v1/ra/certificates/{serial}/revocation"): Operation(
        "revoke a certificate with an RFC 5280 reason",
        "ra",
        (Ok(200, models.Certificate),),
        auth="officer",
        body=models.Revocation,
        params=(SERIAL,),
        errors={409: ("already_revoked",)},
    ),
    ("GET", "/api/v1/ra/officers"): Operation(
        "the RA officers, with their lock state and unlock right",
        "ra",
        (Ok(200, models.Officers),),
        auth="officer",
    ),
    ("POST", "/api/v1/ra/officers/{login}/unlock"): Operation(
        "unlock an officer locked by failed logins (needs the unlock right; audited)",
        "ra",
        (Ok(200, models.OfficerEntry),),
        auth="officer",
        params=(OFFICER_LOGIN,),
        errors={403: ("forbidden",)},
    ),
    ("POST", "/api/v1/ra/subscribers/{id}/cmp-secret"): Operation(
        "a one-time CMP enrolment secret for the subscriber (reference = account); replaces "
        "an unused one",
        "ra",
        (Ok(201, models.CmpSecret),),
        auth="officer",
        params=(SUBSCRIBER_ID,),
    ),
    ("GET", "/api/v1/ra/audit"): Operation(
        "audit events in id order (order=desc: newest first, paged with before_id)",
        "ra",
        (Ok(200, models.AuditEvents),),
        auth="officer",
        query=models.AuditQuery,
    ),
}
