"""The issuers one worker signs for: found on the token, proved, and looked up by requests.

``open_registry`` checks each online issuer's certificate against its token key (the key found
by label must be the certificate's key), proves the key with a test signature that verifies,
and does the same for each OCSP responder key; then requests look their issuer, profile and
responder up in the ``Registry``. Root CAs are not among them: their keys are on the offline
root token, which the signer never opens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from config.loader import ConfigError
from signer.errors import ErrorKind, SignerError, describe
from signer.issuance import verify
from signer.issuance.bounds import Bounds
from signer.issuance.issuer import Issuer
from signer.issuance.keys import KeySource, PublicKey, RecordingKey, signature_hash
from signer.issuance.profile import Profile
from signer.issuance.responder import Responder, Responders, ResponderSlot

if TYPE_CHECKING:
    from signer.config import SignerConfig

log = logging.getLogger("signer.worker")

TEST_MESSAGE = b"signer self-test: the key on the token matches the issuer certificate"


class Registry:
    """Issuers and profiles known to one worker, with the lookups requests need."""

    def __init__(
        self,
        issuers: Mapping[str, Issuer],
        profiles: Mapping[str, Profile],
        clock: Callable[[], float],
        responders: Responders | None = None,
        bounds: Bounds | None = None,
    ) -> None:
        self.issuers = dict(issuers)
        self.bounds = bounds if bounds is not None else Bounds()
        self.profiles = dict(profiles)
        self.clock = clock
        self.responders = responders if responders is not None else Responders({})
        active = [i for i in self.issuers.values() if i.active]
        if len(active) != 1:
            raise SignerError(ErrorKind.INTERNAL, "exactly one issuer must be active")
        self.active = active[0]

    def issuer(self, name: str | None, *, for_issuance: bool = False) -> Issuer:
        if name is None:
            return self.active
        issuer = self.issuers.get(name)
        if issuer is None:
            raise SignerError(ErrorKind.UNKNOWN_ISSUER, f"unknown issuer {name!r}")
        if for_issuance and (issuer.role != "issuing" or not issuer.active):
            # rotated-out and root keys sign CRLs and OCSP answers, never new certificates
            raise SignerError(ErrorKind.UNKNOWN_ISSUER, f"issuer {name!r} does not issue")
        return issuer

    def responder(self, issuer: Issuer) -> Responder:
        """The issuer's OCSP responder, valid now: an OCSP answer is never signed by a CA key,
        nor by a responder certificate that has expired or is not yet valid."""
        return self.responders.for_issuer(issuer.name, self.clock())

    def profile(self, name: str) -> Profile:
        profile = self.profiles.get(name)
        if profile is None:
            raise SignerError(ErrorKind.UNKNOWN_PROFILE, f"unknown profile {name!r}")
        return profile


def find_key(keys: KeySource, name: str, label: str) -> PublicKey:
    """The public half of the key with ``label``; a key that is missing or unusable is a
    configuration error (a token fault goes through: the worker heals and tries again)."""
    try:
        return keys.find_public_key(label)
    except SignerError as exc:
        if exc.kind is ErrorKind.TOKEN_UNAVAILABLE:
            raise
        raise ConfigError(f"issuer {name}: key {label!r} not usable: {exc.message}") from exc
    except Exception as exc:
        raise ConfigError(
            f"issuer {name}: key {label!r} not usable on the token: {describe(exc)}"
        ) from exc


@dataclass(frozen=True)
class _Probe:
    name: str
    public_key: PublicKey


def prove_key(key: RecordingKey, public: PublicKey, name: str) -> None:
    """The key signs, and the signature verifies with the public key it must match."""
    hash_algorithm = signature_hash(public)
    if isinstance(public, rsa.RSAPublicKey):
        sig = key.sign(TEST_MESSAGE, padding.PKCS1v15(), hash_algorithm)
    else:
        sig = key.sign(TEST_MESSAGE, ec.ECDSA(hash_algorithm))
    verify.signature(_Probe(name, public), sig, TEST_MESSAGE, hash_algorithm)


def open_registry(
    keys: KeySource, scfg: SignerConfig, clock: Callable[[], float] = time.time
) -> Registry:
    """Find every online issuer's key and OCSP responder key, prove each with a test
    signature, and make sure each responder has a current certificate."""
    issuers: dict[str, Issuer] = {}
    slots: dict[str, ResponderSlot] = {}
    for spec in scfg.online_issuers:
        token_public = find_key(keys, spec.name, spec.key_label)
        if token_public != spec.certificate.public_key():
            raise ConfigError(
                f"issuer {spec.name}: the certificate does not match token key {spec.key_label!r}"
            )
        key = keys.signing_key(spec.key_label, token_public)
        issuer = Issuer(
            name=spec.name,
            role=spec.role,
            active=spec.active,
            certificate=spec.certificate,
            key=key,
            public_url=scfg.public_url,
        )
        prove_key(key, token_public, spec.name)
        issuers[spec.name] = issuer
        if spec.ocsp_key_label:
            responder_public = find_key(keys, spec.name, spec.ocsp_key_label)
            responder_key = keys.signing_key(spec.ocsp_key_label, responder_public)
            prove_key(responder_key, responder_public, f"{spec.name}-ocsp")
            slots[spec.name] = ResponderSlot(
                issuer, responder_key, scfg.state_dir, scfg.ocsp_responder_validity_days
            )
        else:
            log.warning(
                "issuer %s has no OCSP responder key: its OCSP answers are refused", spec.name
            )
    responders = Responders(slots)
    responders.refresh(clock())
    return Registry(issuers, scfg.profiles, clock, responders, scfg.bounds)


def key_signatures(registry: Registry) -> dict[str, int]:
    """Signatures made so far by the registry's keys, by role: ``ca`` (issuing CA keys:
    certificates, CRLs, responder certificates) and ``ocsp`` (responder keys: OCSP answers)."""
    return {
        "ca": sum(i.key.signatures for i in registry.issuers.values()),
        "ocsp": sum(k.signatures for k in registry.responders.keys()),
    }
