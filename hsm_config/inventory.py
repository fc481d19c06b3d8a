"""What is on the token, and whether the CA keys there are what a CA key must be.

``list`` shows every key and certificate with the attributes that matter for a CA key;
``check`` flags any private key that could leave the token or was not made on it, and any issuer
of the manifest whose certificate does not match the token's key. The check reads the token
itself: the manifest says what *should* be there, the token says what *is*.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import pkcs11.exceptions as p11e
from cryptography import x509
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from config.manifest import IssuerEntry
from hsm_config import certs
from signer.hsm.token import TokenHandle

FLAGS = (
    ("sensitive", Attribute.SENSITIVE),
    ("extractable", Attribute.EXTRACTABLE),
    ("always_sensitive", Attribute.ALWAYS_SENSITIVE),
    ("never_extractable", Attribute.NEVER_EXTRACTABLE),
    ("local", Attribute.LOCAL),
    ("private", Attribute.PRIVATE),
    ("sign", Attribute.SIGN),
)
CURVES = {
    encode_named_curve_parameters(oid): name
    for oid, name in (("secp256r1", "P-256"), ("secp384r1", "P-384"), ("secp521r1", "P-521"))
}
CLASS_NAMES = {
    ObjectClass.PRIVATE_KEY: "private",
    ObjectClass.PUBLIC_KEY: "public",
    ObjectClass.CERTIFICATE: "certificate",
}


@dataclass(frozen=True)
class TokenObject:
    """One row of ``ca-keys list``; ``None`` means the attribute does not apply to the class."""

    label: str
    id: str
    cls: str
    key: str
    sensitive: bool | None = None
    extractable: bool | None = None
    always_sensitive: bool | None = None
    never_extractable: bool | None = None
    local: bool | None = None
    private: bool | None = None
    sign: bool | None = None


def _attr(obj: Any, attr: Attribute) -> Any:
    try:
        return obj[attr]
    except (p11e.AttributeTypeInvalid, p11e.AttributeSensitive):
        return None


def _key_description(obj: Any) -> str:
    key_type = _attr(obj, Attribute.KEY_TYPE)
    if key_type == KeyType.RSA:
        modulus = _attr(obj, Attribute.MODULUS)
        return f"RSA {len(modulus) * 8}" if modulus else "RSA"
    if key_type == KeyType.EC:
        params = _attr(obj, Attribute.EC_PARAMS)
        return f"EC {CURVES.get(bytes(params), 'unknown curve') if params else ''}".strip()
    return str(key_type)


def _describe(obj: Any, cls: ObjectClass) -> TokenObject:
    label = str(_attr(obj, Attribute.LABEL) or "")
    key_id = bytes(_attr(obj, Attribute.ID) or b"").hex()
    if cls == ObjectClass.CERTIFICATE:
        value = _attr(obj, Attribute.VALUE)
        what = "X.509"
        if value:
            what = f"X.509 {x509.load_der_x509_certificate(value).subject.rfc4514_string()}"
        private = _attr(obj, Attribute.PRIVATE)
        return TokenObject(label, key_id, CLASS_NAMES[cls], what, private=private)
    flags: dict[str, bool | None] = {}
    for name, attr in FLAGS:
        if cls == ObjectClass.PUBLIC_KEY and name not in ("local", "private"):
            continue
        value = _attr(obj, attr)
        flags[name] = None if value is None else bool(value)
    if cls == ObjectClass.PUBLIC_KEY:
        flags["sign"] = None
    return TokenObject(label, key_id, CLASS_NAMES[cls], _key_description(obj), **flags)


def list_objects(handle: TokenHandle) -> list[TokenObject]:
    rows: list[TokenObject] = []
    for cls in CLASS_NAMES:
        for obj in handle.session.get_objects({Attribute.CLASS: cls}):
            rows.append(_describe(obj, cls))
    rows.sort(key=lambda r: (r.label, list(CLASS_NAMES.values()).index(r.cls)))
    return rows


def check(
    handle: TokenHandle, entries: list[IssuerEntry], *, root_token: bool = False
) -> list[str]:
    """Problems found; an empty list means every CA key is fit for purpose.

    On the online token (``root_token`` False) the issuing CAs are checked and a root key is a
    problem of its own: the root belongs on its offline token. On the root token only the
    roots are checked.
    """
    problems: list[str] = []
    rules = (
        ("extractable", True, "is extractable"),
        ("sensitive", False, "is not sensitive"),
        ("local", False, "was not generated on the token (CKA_LOCAL false)"),
        ("always_sensitive", False, "was not always sensitive"),
        ("never_extractable", False, "was extractable at some time"),
    )
    for row in list_objects(handle):
        if row.cls != "private":
            continue
        for field, bad, text in rules:
            value = getattr(row, field)
            if value is None or value is bad:
                problems.append(f"private key {row.label!r} (id {row.id}) {text}")
    for entry in entries:
        if (entry.role == "root") == root_token:
            problems.extend(_check_issuer(handle, entry))
        elif entry.role == "root" and any(
            r.label == entry.key_label for r in list_objects(handle) if r.cls == "private"
        ):
            problems.append(f"root {entry.name!r}: its private key is on the online token")
    return problems


def _check_issuer(handle: TokenHandle, entry: IssuerEntry) -> list[str]:
    try:
        cert = entry.load_certificate()
    except Exception as exc:
        return [f"issuer {entry.name!r}: {exc}"]
    try:
        public = handle.find_public_key(entry.key_label)
    except (p11e.NoSuchKey, p11e.MultipleObjectsReturned) as exc:
        return [f"issuer {entry.name!r}: key {entry.key_label!r} {type(exc).__name__}"]
    out = []
    if not certs.matches_public_key(cert, public):
        out.append(f"issuer {entry.name!r}: certificate does not match key {entry.key_label!r}")
    on_token = handle.find_certificate(entry.key_label)
    if on_token is not None and on_token != cert:
        out.append(f"issuer {entry.name!r}: certificate on the token differs from the file")
    return out


def _mark(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def format_table(rows: list[TokenObject]) -> str:
    headers = [
        "LABEL",
        "ID",
        "CLASS",
        "KEY",
        "SENS",
        "EXTR",
        "ALWS",
        "NEVX",
        "LOCAL",
        "PRIV",
        "SIGN",
    ]
    lines = [
        [
            r.label,
            r.id[:16],
            r.cls,
            r.key if r.cls != "certificate" else r.key[:40],
            _mark(r.sensitive),
            _mark(r.extractable),
            _mark(r.always_sensitive),
            _mark(r.never_extractable),
            _mark(r.local),
            _mark(r.private),
            _mark(r.sign),
        ]
        for r in rows
    ]
    widths = [max([len(h), *(len(line[i]) for line in lines)]) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*line).rstrip() for line in [headers, *lines])


def to_json(rows: list[TokenObject]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)
