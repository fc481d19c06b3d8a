"""CMP messages (RFC 4210 as updated by RFC 9480) through pyasn1 and pyasn1-alt-modules:
decode a request, read its parts, build the answers. No DER is written by hand: names and keys
go from cryptography's DER into the pyasn1 types and back through the DER codec."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, univ, useful
from pyasn1_alt_modules import rfc5280, rfc9480

from gateway.cmp.failures import CmpFailure

MAX_MESSAGE = 64 * 1024
NONCE_BYTES = 16
REQUEST_BODIES = ("ir", "cr", "p10cr", "kur", "rr", "certConf", "genm")


@dataclass(frozen=True)
class Request:
    """A decoded request and the parts the server reads."""

    message: rfc9480.PKIMessage
    body_type: str
    pvno: int
    transaction_id: bytes
    sender_nonce: bytes
    sender_kid: bytes | None
    message_time: datetime | None
    protection_alg: rfc5280.AlgorithmIdentifier | None
    implicit_confirm: bool

    @property
    def header(self) -> rfc9480.PKIHeader:
        return self.message["header"]

    @property
    def body(self) -> univ.Asn1Item:
        return self.message["body"][self.body_type]


def _octets(value: univ.Asn1Item) -> bytes | None:
    return bytes(value) if value.isValue else None


def decode(der: bytes) -> Request:
    """A PKIMessage, strictly: one DER value, nothing after it, a body the server serves, the
    header fields every request must carry."""
    if not der or len(der) > MAX_MESSAGE:
        raise CmpFailure("badDataFormat", "not a CMP message (empty or too large)")
    try:
        message, rest = decoder.decode(der, asn1Spec=rfc9480.PKIMessage())
    except (
        PyAsn1Error,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        OverflowError,
        RecursionError,
    ) as exc:
        raise CmpFailure("badDataFormat", "the message is not a DER PKIMessage") from exc
    if rest:
        raise CmpFailure("badDataFormat", "data after the PKIMessage")
    header = message["header"]
    body_type = message["body"].getName()
    pvno = int(header["pvno"])
    tid = _octets(header["transactionID"])
    nonce = _octets(header["senderNonce"])
    when = None
    if header["messageTime"].isValue:
        try:
            when = header["messageTime"].asDateTime.astimezone(UTC)
        except (PyAsn1Error, ValueError) as exc:
            raise CmpFailure("badTime", "messageTime does not parse") from exc
    alg = header["protectionAlg"] if header["protectionAlg"].isValue else None
    implicit = False
    if header["generalInfo"].isValue:
        implicit = any(
            itv["infoType"] == rfc9480.id_it_implicitConfirm for itv in header["generalInfo"]
        )
    req = Request(
        message=message,
        body_type=body_type,
        pvno=pvno,
        transaction_id=tid or b"",
        sender_nonce=nonce or b"",
        sender_kid=_octets(header["senderKID"]),
        message_time=when,
        protection_alg=alg,
        implicit_confirm=implicit,
    )
    if pvno not in (2, 3):
        raise CmpFailure("unsupportedVersion", "pvno must be 2 (cmp2000) or 3 (cmp2021)", req)
    if body_type not in REQUEST_BODIES:
        raise CmpFailure("badRequest", f"{body_type} is not a request this server serves", req)
    if not tid or len(tid) < 16 or len(tid) > 64:
        raise CmpFailure("badRequest", "transactionID must be 16 to 64 octets", req)
    if not nonce or len(nonce) < 16 or len(nonce) > 64:
        raise CmpFailure("badSenderNonce", "senderNonce must be 16 to 64 octets", req)
    return req


def protected_part(header: rfc9480.PKIHeader, body: rfc9480.PKIBody) -> bytes:
    """DER of ProtectedPart: what the MAC or signature covers (RFC 4210 5.1.3)."""
    part = rfc9480.ProtectedPart()
    part["header"] = header
    part["body"] = body
    return encoder.encode(part)


def name_of(name: x509.Name) -> rfc5280.Name:
    value, _ = decoder.decode(name.public_bytes(), asn1Spec=rfc5280.Name())
    return value


def general_name(name: x509.Name) -> rfc9480.GeneralName:
    gn = rfc9480.GeneralName()
    gn["directoryName"]["rdnSequence"] = name_of(name)["rdnSequence"]
    return gn


def spki_der(template_key: univ.Asn1Item) -> bytes:
    """The DER SubjectPublicKeyInfo of a CertTemplate's (implicitly tagged) publicKey."""
    spki = rfc5280.SubjectPublicKeyInfo()
    spki["algorithm"] = template_key["algorithm"]
    spki["subjectPublicKey"] = template_key["subjectPublicKey"]
    return encoder.encode(spki)


def cmp_certificate(der: bytes) -> rfc9480.CMPCertificate:
    cert, _ = decoder.decode(der, asn1Spec=rfc9480.CMPCertificate())
    return cert


def put(seq: univ.Sequence, name: str, value: object) -> None:
    """Set ``seq[name]`` where the component may be tagged: plain values are cloned into the
    component's (tagged) type, structures copied into its slot."""
    if isinstance(value, univ.Sequence):
        fill(seq[name], value)
    else:
        seq[name] = seq.componentType[name].asn1Object.clone(value)


def fill(slot: univ.Sequence, value: univ.Sequence) -> None:
    """Copy ``value``'s components into a (tagged) schema slot of the same type."""
    for name in value:
        if value[name].isValue:
            slot[name] = value[name]


def certificate_der(value: rfc9480.CMPCertificate) -> bytes:
    plain = rfc9480.CMPCertificate()
    fill(plain, value)
    return encoder.encode(plain)


def status_info(
    status: str, *, failure: str | None = None, text: str | None = None
) -> rfc9480.PKIStatusInfo:
    info = rfc9480.PKIStatusInfo()
    info["status"] = rfc9480.PKIStatus(status)  # untagged components: plain assignment
    if text:
        info["statusString"].append(char.UTF8String(text[:512]))
    if failure:
        info["failInfo"] = rfc9480.PKIFailureInfo(failure)
    return info


def cert_rep(
    cert_req_id: int, der: bytes, ca_pubs: list[bytes] | None = None
) -> rfc9480.CertRepMessage:
    rep = rfc9480.CertRepMessage()
    response = rfc9480.CertResponse()
    response["certReqId"] = cert_req_id
    response["status"] = status_info("accepted")
    fill(response["certifiedKeyPair"]["certOrEncCert"]["certificate"], cmp_certificate(der))
    rep["response"].append(response)
    for c in ca_pubs or []:
        rep["caPubs"].append(cmp_certificate(c))
    return rep


def error_content(failure: str, text: str) -> rfc9480.ErrorMsgContent:
    content = rfc9480.ErrorMsgContent()
    content["pKIStatusInfo"] = status_info("rejection", failure=failure, text=text)
    return content


def rev_rep(
    status: str, failure: str | None = None, text: str | None = None
) -> rfc9480.RevRepContent:
    rep = rfc9480.RevRepContent()
    rep["status"].append(status_info(status, failure=failure, text=text))
    return rep


def body_of(kind: str, value: univ.Asn1Item | None = None) -> rfc9480.PKIBody:
    """The body choice ``kind`` (its alternatives are context-tagged: the value is copied into
    the tagged slot)."""
    body = rfc9480.PKIBody()
    if kind == "pkiconf":
        body["pkiconf"] = body.componentType["pkiconf"].asn1Object.clone("")
        return body
    slot = body[kind]
    if isinstance(value, univ.SequenceOf):
        for item in value:
            slot.append(item)
    else:
        assert isinstance(value, univ.Sequence)
        fill(slot, value)
    return body


def response_header(
    request: Request | None,
    *,
    sender: x509.Name,
    protection_alg: rfc5280.AlgorithmIdentifier | None,
    sender_kid: bytes | None,
    now: datetime,
    implicit_confirm: bool = False,
) -> rfc9480.PKIHeader:
    """The answer's header: the request's pvno, transactionID and senderNonce (as recipNonce),
    a fresh senderNonce, the request's sender as recipient."""
    header = rfc9480.PKIHeader()
    header["pvno"] = request.pvno if request else 2
    header["sender"] = general_name(sender)
    if request is not None and request.header["sender"].isValue:
        header["recipient"] = request.header["sender"]
    else:
        header["recipient"] = general_name(x509.Name([]))
    put(
        header,
        "messageTime",
        useful.GeneralizedTime().fromDateTime(
            now.astimezone(UTC).replace(microsecond=0, tzinfo=None)
        ),
    )
    if protection_alg is not None:
        put(header, "protectionAlg", protection_alg)
    if sender_kid:
        put(header, "senderKID", sender_kid)
    if request is not None and request.transaction_id:
        put(header, "transactionID", request.transaction_id)
    put(header, "senderNonce", secrets.token_bytes(NONCE_BYTES))
    if request is not None and request.sender_nonce:
        put(header, "recipNonce", request.sender_nonce)
    if implicit_confirm:
        itv = rfc9480.InfoTypeAndValue()
        itv["infoType"] = rfc9480.id_it_implicitConfirm
        itv["infoValue"] = univ.Null("")
        header["generalInfo"].append(itv)  # a SEQUENCE OF: its items are untagged
    return header


def message(
    header: rfc9480.PKIHeader,
    body: rfc9480.PKIBody,
    protection: bytes | None,
    extra_certs: list[bytes],
) -> bytes:
    msg = rfc9480.PKIMessage()
    msg["header"] = header
    msg["body"] = body
    if protection is not None:
        put(msg, "protection", univ.BitString.fromOctetString(protection))
    for der in extra_certs:
        msg["extraCerts"].append(cmp_certificate(der))
    return encoder.encode(msg)
