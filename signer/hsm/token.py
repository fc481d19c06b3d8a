"""Opening, logging into and re-opening a PKCS#11 token.

python-pkcs11 calls ``C_Initialize(NULL)``, so a module context must not be shared by threads
that call it concurrently (SoftHSM needs ``CKF_OS_LOCKING_OK`` for that). The signer therefore
gives each worker *process* one ``TokenHandle``: one context, one logged-in session, key handles
found once. After a token fault the handle re-initialises the module and finds everything again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pkcs11
import pkcs11.exceptions as p11e
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_ec_public_key

from config.token import TokenConfig
from signer.hsm import keys
from signer.hsm.errors import TokenFault, describe, token_fault

log = logging.getLogger(__name__)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def load_module(path: str) -> Any:
    """Load (or re-use) the module; a module that was finalised is initialised again."""
    return pkcs11.lib(path)


class TokenHandle:
    """One module context, one logged-in session on the configured token."""

    def __init__(self, cfg: TokenConfig, rw: bool = False) -> None:
        self.cfg = cfg
        self.rw = rw
        self.lib: Any = None
        self.token: Any = None
        self.session: Any = None

    # -- lifecycle -----------------------------------------------------------------------
    def open(self, attempts: int = 8, first_delay: float = 0.05) -> None:
        """Log in, retrying while the token is briefly invisible.

        SoftHSM's file store rewrites token files when a session logs in, so a process that
        looks at the same moment can get "token not found"; a short backoff rides that out.
        """
        delay = first_delay
        last: BaseException | None = None
        for attempt in range(attempts):
            try:
                self.lib = load_module(str(self.cfg.module))
                self.token = self.lib.get_token(token_label=self.cfg.label)
                self.session = self.token.open(user_pin=self.cfg.pin, rw=self.rw)
                return
            except p11e.PinIncorrect as exc:  # retrying a wrong PIN would lock the token
                raise TokenFault("token login refused: wrong PIN", exc) from None
            except (p11e.PKCS11Error, OSError) as exc:
                last = exc
                log.warning(
                    "token %r not usable (attempt %d/%d): %s",
                    self.cfg.label,
                    attempt + 1,
                    attempts,
                    describe(exc),
                )
                self._drop_session()
                if attempt + 1 < attempts:
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    self._reinitialize_module()
        raise TokenFault(
            f"token {self.cfg.label!r} unavailable: {describe(last) if last else 'unknown'}",
            last,
        )

    def _drop_session(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            try:
                session.close()
            except Exception as exc:  # a dead session cannot be closed cleanly; that is fine
                log.debug("closing a failed session: %s", describe(exc))

    def _reinitialize_module(self) -> None:
        if self.lib is None:
            return
        try:
            self.lib.reinitialize()
        except Exception as exc:
            log.debug("re-initialising the module: %s", describe(exc))
            try:
                pkcs11.unload(str(self.cfg.module))
            except Exception as unload_exc:
                log.debug("unloading the module: %s", describe(unload_exc))
            self.lib = None

    def reopen(self, attempts: int = 8) -> None:
        """Throw the session away, re-initialise the module and log in again."""
        self._drop_session()
        self._reinitialize_module()
        self.open(attempts=attempts)

    def close(self) -> None:
        self._drop_session()

    # -- objects ---------------------------------------------------------------------------
    def _require(self) -> Any:
        if self.session is None:
            raise TokenFault("no open session")
        return self.session

    def find_private_key(self, label: str) -> Any:
        return self._require().get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)

    def find_public_key(self, label: str) -> PublicKey:
        """The public key with ``label``; a token fault is raised as ``TokenFault`` (other
        PKCS#11 errors, such as no such key, as they are)."""
        try:
            return self._public_key(label)
        except Exception as exc:
            if (fault := token_fault(exc, f"finding key {label!r}")) is not None:
                raise fault from None
            raise

    def _public_key(self, label: str) -> PublicKey:
        pub = self._require().get_key(object_class=ObjectClass.PUBLIC_KEY, label=label)
        if pub.key_type == KeyType.RSA:
            n = int.from_bytes(pub[Attribute.MODULUS], "big")
            e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if pub.key_type == KeyType.EC:
            key = load_der_public_key(encode_ec_public_key(pub))
            assert isinstance(key, ec.EllipticCurvePublicKey)
            return key
        raise TokenFault(f"key {label!r} has unsupported type {pub.key_type!r}")

    def find_certificate(self, label: str) -> x509.Certificate | None:
        for obj in self._require().get_objects(
            {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: label}
        ):
            return x509.load_der_x509_certificate(obj[Attribute.VALUE])
        return None

    def raw_signer(self, label: str) -> Callable[[bytes, Mechanism], bytes]:
        """A C_Sign callable bound to the key with ``label``; faults become ``TokenFault``."""
        priv = self.find_private_key(label)

        def raw_sign(data: bytes, mechanism: Mechanism) -> bytes:
            try:
                return priv.sign(data, mechanism=mechanism)
            except p11e.PKCS11Error as exc:
                if (fault := token_fault(exc, "C_Sign failed")) is not None:
                    raise fault from None
                raise

        return raw_sign

    def signing_key(
        self, label: str, public: PublicKey | None = None
    ) -> keys.TokenRSAPrivateKey | keys.TokenECPrivateKey:
        """A cryptography private-key object whose ``sign()`` runs on the token."""
        if public is None:
            public = self.find_public_key(label)
        return keys.wrap(public, self.raw_signer(label), label)
