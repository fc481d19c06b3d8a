"""Every JSON body of the HTTP contract (API.md), declared once as msgspec Structs.

Handlers decode requests into these (``gateway.api.decode``) and answer with them; the OpenAPI
document (``gateway.api.openapi``) is generated from the same classes, so a constraint written
here is enforced and published at once. Request models forbid unknown fields; response models
list every field API.md promises as required.

Text fields are "printable": no C0 control characters or DEL, and at least one character that
is not white space where a value is required (handlers strip the surrounding white space, as the
portal's forms may send it). Passwords are exempt: any character may be part of one.
"""

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from gateway import terms
from signer import vocabulary
from signer.vocabulary import CONTROL_CHARS

# -- reusable constrained types ----------------------------------------------------------------

_C = CONTROL_CHARS
_PRINTABLE = f"^[^{_C}]*$"
_FILLED = f"^[^{_C}]*[^\\s{_C}][^{_C}]*$"
MAX_PASSWORD = 256  # far above the policy; only keeps Argon2 input bounded
MAX_PEM = 64 * 1024  # the body limit; the CSR parser has its own, smaller one (bad_csr)


def filled(max_length: int, description: str = "") -> Any:
    """A required printable text: 1..max_length characters, not only white space."""
    return Annotated[
        str,
        Meta(min_length=1, max_length=max_length, pattern=_FILLED, description=description or None),
    ]


def printable(max_length: int, description: str = "") -> Any:
    """An optional printable text (may be empty)."""
    return Annotated[
        str, Meta(max_length=max_length, pattern=_PRINTABLE, description=description or None)
    ]


Usage = vocabulary.Usage
Status = Literal["revoked", "superseded", "expired", "issued", "expiring", "valid"]
Reason = vocabulary.RequestedReason
DateTime = Annotated[
    str, Meta(extra_json_schema={"format": "date-time"}, description="RFC 3339, UTC")
]
# path parameters: numeric ids (404 when they do not parse), serials, issuer names
ID_PATTERN = r"^[0-9]{1,18}$"
ISSUER_PATTERN = r"^[a-z0-9-]+$"
SERIAL_PATTERN = vocabulary.SERIAL_PATTERN
Serial = Annotated[
    str, Meta(pattern=SERIAL_PATTERN, description="lower-case hex, no leading zeros")
]
Pem = Annotated[str, Meta(max_length=MAX_PEM, description="PEM (or base64 DER)")]
Password = Annotated[str, Meta(min_length=1, max_length=MAX_PASSWORD)]
Email = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=254,
        pattern=f"^[^@\\s{_C}]+@[^@\\s{_C}]+\\.[^@\\s{_C}]+$",
    ),
]
Country = Annotated[
    str,
    Meta(pattern=r"^([A-Za-z]{2})?$", description="ISO 3166 alpha-2, upper-cased; empty means TW"),
]
Id = Annotated[int, Meta(ge=1)]
NonNegative = Annotated[int, Meta(ge=0)]
Base64 = Annotated[str, Meta(max_length=MAX_PEM, description="standard base64 with padding")]
Text64 = filled(64)
Text200 = filled(200)
Optional32 = printable(32)
Optional64 = printable(64)
Optional500 = printable(500)
Cn = filled(64, "the subscriber identifier, e.g. A123456789-63-YIRU")
OuList = Annotated[list[Text64], Meta(max_length=8)]
TermsVersion = Annotated[
    str,
    Meta(
        max_length=64,
        examples=[terms.VERSION],
        description="the current version of GET /api/v1/terms",
    ),
]


class Request(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A request body: unknown fields are an ``invalid_field`` error, not silently dropped."""

    strip: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in self.strip:
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, value.strip())


class Response(msgspec.Struct):
    """A response body: every field is always present."""


# -- errors --------------------------------------------------------------------------------------


class Error(msgspec.Struct, omit_defaults=True):
    """Every 4xx/5xx JSON answer: a fixed machine code and a human message."""

    error: str
    message: str
    field: str | None = None  # with invalid_field: the offending field, e.g. subject.cn
    checks: dict[str, str] | None = None  # with not_ready: what failed


# -- public ----------------------------------------------------------------------------------------


class Health(Response):
    status: Literal["ok"]


class Ready(Response):
    status: Literal["ready"]
    # "degraded": a signer worker is stalled, healing or dead while another serves
    signer: Literal["ok", "degraded"] = "ok"


class Issuer(Response):
    name: Annotated[str, Meta(pattern=ISSUER_PATTERN)]
    subject: str
    not_before: DateTime
    not_after: DateTime
    active: bool
    role: Literal["root", "issuing"]


class Issuers(Response):
    issuers: list[Issuer]


class Captcha(Response):
    captcha_id: str
    image: Annotated[str, Meta(pattern=r"^data:image/png;base64,")]


class CaptchaAudio(Response):
    """The audio alternative of the captcha (an extension of API.md): spoken digits."""

    captcha_id: str
    audio: Annotated[str, Meta(pattern=r"^data:audio/wav;base64,")]


class CaptchaAudioQuery(msgspec.Struct):
    lang: Annotated[Literal["zh-TW", "en"], Meta(description="language of the voice")] = "zh-TW"


# -- subscriber ----------------------------------------------------------------------------------


class Login(Request):
    strip: ClassVar[tuple[str, ...]] = ("account", "captcha_id", "captcha_answer")
    account: Text64
    password: Password
    captcha_id: Optional64 | None = None
    captcha_answer: Optional32 | None = None


class LoginResult(Response):
    csrf_token: str
    must_change_password: bool


class PasswordChange(Request):
    old_password: Password
    new_password: Annotated[
        str, Meta(max_length=MAX_PASSWORD, description="checked against the password policy")
    ]


class Me(Response):
    account: str
    id_number: str
    name: str
    subscriber_name: str
    email: str
    phone: str
    address: str
    usages: list[Usage]


class Terms(Response):
    version: str
    text: str


class Apply(Request):
    usage: Usage
    csr: Pem | None = None  # missing: bad_csr, as before
    terms_version: TermsVersion | None = None  # missing: terms_not_accepted


class Certificate(Response):
    id: Id
    serial: Serial
    usage: Usage
    status: Status
    subject: str
    issuer: str
    not_before: DateTime
    not_after: DateTime
    downloaded: bool
    renewable: bool
    certificate: str
    # extensions of API.md: when and why it was revoked (null unless revoked)
    revoked_at: DateTime | None = None
    revocation_reason: str | None = None


class Certificates(Response):
    certificates: list[Certificate]


class Challenge(Response):
    challenge: str
    expires_at: DateTime


class Renew(Request):
    csr: Pem
    challenge: Base64
    signature: Base64
    terms_version: TermsVersion | None = None  # missing: terms_not_accepted


# -- RA officer ------------------------------------------------------------------------------------


class OfficerLogin(Request):
    strip: ClassVar[tuple[str, ...]] = ("login",)
    login: Text64
    password: Password


SecondFactorDue = Annotated[
    Literal["verify", "enrol"] | None,
    Meta(
        description="null: logged in; verify: give the second factor "
        "(POST /api/v1/ra/session/second-factor); enrol: enrol one first "
        '([gateway] officer_second_factor = "required")'
    ),
]


class OfficerLoginResult(Response):
    csrf_token: str
    second_factor: SecondFactorDue = None


OFFICER_LOGIN_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"  # the ra_officers.login CHECK


class OfficerEntry(Response):
    """An RA officer as other officers see it (docs/API-extensions.md)."""

    login: Annotated[str, Meta(pattern=OFFICER_LOGIN_PATTERN)]
    locked: bool
    failed_attempts: int
    can_unlock: bool


class Officers(Response):
    officers: list[OfficerEntry]


class OfficerSession(Response):
    """``GET /api/v1/ra/session`` (an extension of API.md): for any tab of the browser."""

    csrf_token: str
    login: str


class NewSubject(Request):
    strip: ClassVar[tuple[str, ...]] = ("cn", "o", "c")
    cn: Cn
    ou: OuList | Text64 | None = None
    o: Optional64 | None = None
    c: Country | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.ou, str):
            self.ou = [self.ou]
        self.ou = [v.strip() for v in self.ou or []]
        self.c = (self.c or "TW").upper()


class NewSubscriber(Request):
    """The registration form. The identity checks of ``register_hook`` run after these."""

    strip: ClassVar[tuple[str, ...]] = ("id_number", "name", "email", "phone", "address")
    id_number: Text64
    name: Text200
    email: Email
    subject: NewSubject
    usages: Annotated[list[Usage], Meta(min_length=1, max_length=2)]
    phone: Optional64 | None = None
    address: Optional500 | None = None


class Slip(Response):
    subscriber_id: Id
    account: str
    initial_password: str


class ResetSlip(Response):
    account: str
    initial_password: str


class Subject(Response):
    cn: str
    ou: list[str]
    o: str
    c: str


class Subscriber(Response):
    subscriber_id: Id
    account: str
    id_number: str
    name: str
    email: str
    phone: str
    address: str
    subject: Subject
    usages: list[Usage]
    locked: bool
    failed_attempts: NonNegative
    must_change_password: bool
    certificates: list[Certificate]


class Subscribers(Response):
    subscribers: list[Subscriber]


class Revocation(Request):
    reason: Reason


class AuditEvent(Response):
    id: Id
    at: DateTime
    actor: str
    action: str
    target: str
    details: dict[str, Any]


class AuditEvents(Response):
    events: list[AuditEvent]


# -- RA officers' second factor (docs/API-extensions.md) -------------------------------------

ChallengeId = Annotated[str, Meta(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
TotpCode = Annotated[str, Meta(pattern=r"^[0-9]{6}$", description="the 6-digit TOTP code")]
FactorName = Annotated[
    str,
    Meta(max_length=64, pattern=_PRINTABLE, description="the officer's label; empty: a default"),
]
WebAuthnJson = Annotated[
    dict[str, Any],
    Meta(description="the PublicKeyCredential as JSON (its toJSON(): base64url binary fields)"),
]


class Factor(Response):
    id: Id
    kind: Literal["webauthn", "totp"]
    name: str
    created_at: DateTime
    last_used_at: DateTime | None


class Factors(Response):
    factors: list[Factor]
    policy: Literal["optional", "required"]
    second_factor: SecondFactorDue


class WebAuthnOptions(Response):
    challenge_id: str
    options: Annotated[
        dict[str, Any],
        Meta(
            description="PublicKeyCredentialCreationOptions / RequestOptions in their JSON "
            "form (binary fields base64url)"
        ),
    ]


class WebAuthnEnrol(Request):
    challenge_id: ChallengeId
    credential: WebAuthnJson
    name: FactorName = ""


class TotpSecret(Response):
    challenge_id: str
    secret: Annotated[str, Meta(description="base32, for manual entry into the app")]
    uri: Annotated[str, Meta(description="otpauth://totp/... provisioning URI")]


class TotpEnrol(Request):
    challenge_id: ChallengeId
    code: TotpCode
    name: FactorName = ""


class Enrolled(Response):
    factor: Factor
    csrf_token: Annotated[
        str | None,
        Meta(
            description="set when the enrolment completed an enrol-only login: the session "
            "was replaced (new cookie) and this is its CSRF token"
        ),
    ]


class SecondFactor(Request):
    """WebAuthn: challenge_id + credential; TOTP: totp_code. Exactly one of the two."""

    challenge_id: ChallengeId | None = None
    credential: WebAuthnJson | None = None
    totp_code: TotpCode | None = None


class SecondFactorResult(Response):
    csrf_token: str


# -- query parameters (decoded from the query string, strings converted) ---------------------


class SearchQuery(msgspec.Struct):
    q: Annotated[
        str,
        Meta(
            max_length=200,
            pattern=_PRINTABLE,
            description="case-insensitive substring of id_number, account, "
            "name, subject CN or e-mail",
        ),
    ] = ""


class AuditQuery(msgspec.Struct):
    after_id: Annotated[int, Meta(ge=0, le=2**62, description="events after this id")] = 0
    limit: Annotated[int, Meta(ge=1, le=1000, description="at most this many events")] = 100
    # extensions of API.md: newest first, paged with before_id (0: from the newest)
    order: Annotated[Literal["asc", "desc"], Meta(description="asc (API.md) or desc")] = "asc"
    before_id: Annotated[
        int, Meta(ge=0, le=2**62, description="with order=desc: events before this id")
    ] = 0


class CmpSecret(Response):
    """The one-time CMP enrolment secret an RA officer hands the subscriber
    (docs/API-extensions.md)."""

    reference: str
    secret: str
    expires_at: str
