"""Token initialisation and CA key generation on the PKCS#11 token.

CA keys are made *on* the token (``CKA_LOCAL``), sensitive and never extractable, usable only
for signing; every generation is followed by a test signature that is verified in software, so a
key that cannot sign correctly is noticed at the ceremony and not at the first issuance.

PINs come only from the configuration's secret files / environment variables or an interactive
prompt; they never appear on argv, in logs or in exception messages.
"""

from __future__ import annotations

import ctypes
import getpass
import hashlib
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
import pkcs11.exceptions as p11e
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pkcs11 import Attribute, KeyType, ObjectClass, TokenFlag
from pkcs11.util.ec import encode_named_curve_parameters

from config.loader import RawConfig, read_secret
from config.sections import parse_section
from config.token import ONLINE_TOKEN, ROOT_TOKEN, TokenConfig, TokenSection
from signer.errors import SignerError
from signer.hsm.errors import describe
from signer.hsm.keys import signature_hash
from signer.hsm.token import PublicKey, TokenHandle


class KeysError(Exception):
    """Root error of ``ca-keys``: an expected failure, reported as one line without traceback.

    ``exit_code`` lets a refusal that is a usage problem (2) differ from a failed operation (1).
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class KeySpec:
    """What a ``--type`` name means on the token."""

    name: str
    key_type: KeyType
    bits: int | None = None  # RSA modulus size
    curve: str | None = None  # EC named curve


KEY_TYPES: dict[str, KeySpec] = {
    "rsa2048": KeySpec("rsa2048", KeyType.RSA, bits=2048),
    "rsa3072": KeySpec("rsa3072", KeyType.RSA, bits=3072),
    "rsa4096": KeySpec("rsa4096", KeyType.RSA, bits=4096),
    "p256": KeySpec("p256", KeyType.EC, curve="secp256r1"),
    "p384": KeySpec("p384", KeyType.EC, curve="secp384r1"),
}

# Private keys of a CA: sign only, never leave the token in any form.
PRIVATE_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.SIGN_RECOVER: False,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}
PUBLIC_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,
    Attribute.VERIFY: True,
    Attribute.VERIFY_RECOVER: False,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
}

TEST_MESSAGE = b"ca-keys test signature"


def key_spec(name: str) -> KeySpec:
    try:
        return KEY_TYPES[name]
    except KeyError:
        raise KeysError(
            f"unknown key type {name!r} (choose from {', '.join(KEY_TYPES)})", 2
        ) from None


# -- PINs and sessions ----------------------------------------------------------------------
def _prompt(what: str) -> str:
    """Ask on the terminal only: a PIN must never be read from a pipe someone else controls."""
    if not sys.stdin.isatty():
        raise KeysError(f"no {what} configured: set it in a secret file or environment variable")
    value = getpass.getpass(f"{what}: ")
    if not value:
        raise KeysError(f"no {what} entered")
    return value


def load_token_config(
    cfg: RawConfig, need_so_pin: bool = False, section: str = ONLINE_TOKEN
) -> TokenConfig:
    """``token_config`` plus the interactive fallback the security officer may use.

    ``token_config`` insists on a pin_file/pin_env; the CLI also accepts a terminal prompt when
    neither is set, so a production PIN need not be written to disk at all. ``section`` is
    ``[token]`` (the online token) or ``[roottoken]`` (the offline root's own token).
    """
    sec = cfg.section(section)
    if not sec and section == ROOT_TOKEN:
        raise KeysError(
            "[roottoken] is not configured: the root key lives on its own token "
            "(module, label, pin_file or pin_env)",
            2,
        )
    tok = parse_section(cfg, section, TokenSection)
    if not tok.module or not tok.label:
        raise KeysError(f"[{section}]: module and label are required")
    what = "root token" if section == ROOT_TOKEN else "token"
    pin = read_secret(cfg, tok.secrets(), "pin", section, required=False)
    if pin is None:
        if tok.pin_file or tok.pin_env:
            raise KeysError(f"[{section}]: the configured user PIN secret is empty or unset")
        pin = _prompt(f"{what} user PIN")
    so_pin = read_secret(cfg, tok.secrets(), "so_pin", section, required=False)
    if so_pin is None and need_so_pin:
        if tok.so_pin_file or tok.so_pin_env:
            raise KeysError(f"[{section}]: the configured SO PIN secret is empty or unset")
        so_pin = _prompt(f"{what} SO PIN")
    return TokenConfig(module=Path(tok.module), label=tok.label, pin=pin, so_pin=so_pin)


def load_root_token_config(cfg: RawConfig, need_so_pin: bool = False) -> TokenConfig:
    """The offline root's token (``[roottoken]``); it must not be the online token."""
    root = load_token_config(cfg, need_so_pin, ROOT_TOKEN)
    online = parse_section(cfg, ONLINE_TOKEN, TokenSection)
    if online.label == root.label and online.module == str(root.module):
        raise KeysError("[roottoken] names the online token: the root key needs its own token", 2)
    return root


@contextmanager
def open_token(tcfg: TokenConfig, rw: bool = True) -> Iterator[TokenHandle]:
    """A logged-in ``TokenHandle`` that is always closed; faults become one-line ``KeysError``s.

    One attempt only: a CLI should say at once that the token is missing or the PIN is wrong,
    and retrying a wrong PIN could lock the token.
    """
    handle = TokenHandle(tcfg, rw=rw)
    try:
        handle.open(attempts=1)
    except SignerError as exc:
        raise KeysError(exc.message) from None
    try:
        yield handle
    except p11e.PKCS11Error as exc:
        raise KeysError(f"token operation failed: {describe(exc)}") from None
    finally:
        handle.close()


# -- token initialisation (dev/test) -------------------------------------------------------
def _c_init_token(module: Path, slot_id: int, so_pin: str, label: str) -> None:
    """Call ``C_InitToken`` on the module instance this process already initialised.

    python-pkcs11 0.10 does not wrap C_InitToken. softhsm2-util takes PINs only on argv (or a
    TTY), and a token initialised by another process stays invisible to this process's module
    context until C_Finalize/C_Initialize, which would kill every other session in the process
    (the test run shares one). Resolving the symbol in the already-loaded library (dlopen of the
    same path returns the same instance) keeps the PIN in memory and the context intact.
    """
    so = ctypes.CDLL(str(module))
    fn = so.C_InitToken
    fn.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    fn.restype = ctypes.c_ulong
    pin = so_pin.encode("utf-8")
    raw_label = label.encode("utf-8")
    if len(raw_label) > 32:
        raise KeysError("token label longer than 32 bytes", 2)
    rv = fn(slot_id, pin, len(pin), raw_label.ljust(32, b" "))
    if rv != 0:
        raise KeysError(f"C_InitToken failed with CKR 0x{rv:x}")


def init_token(tcfg: TokenConfig, exist_ok: bool = False) -> str:
    """Initialise a free SoftHSM slot with the configured label, SO PIN and user PIN."""
    if "softhsm" not in tcfg.module.name.lower():
        raise KeysError(
            f"init-token is for SoftHSM development tokens only, not {tcfg.module.name}", 2
        )
    if not tcfg.so_pin:
        raise KeysError("[token]: init-token needs so_pin_file or so_pin_env", 2)
    try:
        lib = pkcs11.lib(str(tcfg.module))
        slots = lib.get_slots(token_present=True)
        tokens = [(slot, slot.get_token()) for slot in slots]
    except p11e.PKCS11Error as exc:
        raise KeysError(f"cannot load {tcfg.module}: {describe(exc)}") from None
    if any(tok.label == tcfg.label for _, tok in tokens):
        if exist_ok:
            return f"token {tcfg.label!r} already initialised"
        raise KeysError(f"a token labelled {tcfg.label!r} already exists", 2)
    free = [slot for slot, tok in tokens if not tok.flags & TokenFlag.TOKEN_INITIALIZED]
    if not free:
        raise KeysError("no free SoftHSM slot (is SOFTHSM2_CONF pointing to a writable folder?)")
    _c_init_token(tcfg.module, free[0].slot_id, tcfg.so_pin, tcfg.label)
    try:
        token = lib.get_token(token_label=tcfg.label)
        with token.open(so_pin=tcfg.so_pin, rw=True) as session:
            session.init_pin(tcfg.pin)
    except p11e.PKCS11Error as exc:
        raise KeysError(f"setting the user PIN failed: {describe(exc)}") from None
    return f"token {tcfg.label!r} initialised"


# -- key generation ----------------------------------------------------------------------------
@dataclass(frozen=True)
class GeneratedKey:
    label: str
    key_type: str
    key_id: bytes
    public_key: PublicKey

    @property
    def fingerprint(self) -> str:
        return spki_fingerprint(self.public_key)


def spki_fingerprint(public_key: PublicKey) -> str:
    """SHA-256 over the SubjectPublicKeyInfo: what a second person compares at the ceremony."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return colon_hex(hashlib.sha256(der).digest())


def colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02X}" for b in data)


def label_in_use(session: Any, label: str) -> bool:
    """Any object (key, certificate, data) with this label blocks a new key of that label."""
    for _ in session.get_objects({Attribute.LABEL: label}):
        return True
    return False


def key_id(session: Any, label: str) -> bytes:
    """The CKA_ID shared by the key pair (and its certificate) with this label."""
    priv = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
    return bytes(priv[Attribute.ID])


def generate(handle: TokenHandle, label: str, key_type: str) -> GeneratedKey:
    """Generate a CA key pair on the token, then prove it signs with a verified test signature."""
    spec = key_spec(key_type)
    session = handle.session
    if not label or len(label.encode("utf-8")) > 64:
        raise KeysError("a key label must be 1 to 64 bytes", 2)
    if label_in_use(session, label):
        raise KeysError(f"label {label!r} already exists on the token; choose another", 2)
    new_id = secrets.token_bytes(16)
    common = {"store": True, "label": label, "id": new_id}
    try:
        if spec.key_type is KeyType.RSA:
            session.generate_keypair(
                KeyType.RSA,
                spec.bits,
                public_template=PUBLIC_TEMPLATE,
                private_template=PRIVATE_TEMPLATE,
                **common,
            )
        else:
            assert spec.curve is not None
            params = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters(spec.curve)},
                local=True,
            )
            params.generate_keypair(
                public_template=PUBLIC_TEMPLATE, private_template=PRIVATE_TEMPLATE, **common
            )
    except p11e.PKCS11Error as exc:
        raise KeysError(f"generating {key_type} key {label!r} failed: {describe(exc)}") from None
    public = handle.find_public_key(label)
    self_test(handle, label, public)
    return GeneratedKey(label=label, key_type=key_type, key_id=new_id, public_key=public)


def self_test(handle: TokenHandle, label: str, public: PublicKey) -> None:
    """Sign on the token through the same wrapper the signer uses, verify in software."""
    token_key = handle.signing_key(label, public)
    hash_alg = signature_hash(public)
    try:
        if isinstance(public, rsa.RSAPublicKey):
            assert isinstance(token_key, rsa.RSAPrivateKey)
            sig = token_key.sign(TEST_MESSAGE, padding.PKCS1v15(), hash_alg)
            public.verify(sig, TEST_MESSAGE, padding.PKCS1v15(), hash_alg)
        else:
            assert isinstance(token_key, ec.EllipticCurvePrivateKey)
            sig = token_key.sign(TEST_MESSAGE, ec.ECDSA(hash_alg))
            public.verify(sig, TEST_MESSAGE, ec.ECDSA(hash_alg))
    except InvalidSignature:
        raise KeysError(f"test signature with key {label!r} did not verify") from None
    except (p11e.PKCS11Error, SignerError) as exc:
        raise KeysError(f"test signature with key {label!r} failed: {exc}") from None


def destroy_key_pair(session: Any, label: str) -> None:
    """Remove a key pair made by a ceremony that then failed, so its label can be reused."""
    for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY, ObjectClass.CERTIFICATE):
        for obj in list(session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: label})):
            obj.destroy()
