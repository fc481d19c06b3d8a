"""Named certificate profiles: the only shapes of end-entity certificate the signer will sign.

A request names a profile; everything that makes a certificate powerful (CA flag, key usages,
policies, validity ceiling) comes from the profile, never from the request. Profile config is
parsed into frozen objects once, at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from msgspec import Meta

from config.loader import ConfigError, RawConfig
from config.sections import Section, convert_table
from signer.errors import ErrorKind, SignerError
from signer.vocabulary import Usage, key_refusal


class ProfileTable(Section):
    """One ``[profiles.<name>]`` table as the file has it; usage and validity are required
    (a profile that signs must say what for and how long)."""

    usage: Usage
    max_validity_days: Annotated[int, Meta(ge=1, le=3650)]
    policy_oids: tuple[str, ...] = ()  # dotted OIDs, checked by ``parse_profiles``
    max_backdate_seconds: Annotated[int, Meta(ge=0, le=86400)] = 3600


@dataclass(frozen=True)
class Profile:
    name: str
    usage: str
    max_validity_seconds: int
    policy_oids: tuple[str, ...]
    max_backdate_seconds: int = 3600

    def key_usage(self, public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> x509.KeyUsage:
        """The key usage bits for this profile and the subject key's algorithm."""
        signing = self.usage == "signing"
        ec_key = isinstance(public_key, ec.EllipticCurvePublicKey)
        return x509.KeyUsage(
            digital_signature=signing,
            content_commitment=signing,
            key_encipherment=not signing and not ec_key,
            data_encipherment=not signing and not ec_key,
            key_agreement=not signing and ec_key,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )


def parse_profiles(cfg: RawConfig) -> dict[str, Profile]:
    """Every ``[profiles.*]`` table, checked once at start; none at all is an error."""
    raw = cfg.section("profiles")
    if not raw:
        raise ConfigError("[profiles]: at least one profile is required")
    profiles: dict[str, Profile] = {}
    for name, sec in raw.items():
        table = convert_table(sec, f"profiles.{name}", ProfileTable)
        try:
            policies = tuple(x509.ObjectIdentifier(o).dotted_string for o in table.policy_oids)
        except ValueError as exc:
            raise ConfigError(f"[profiles.{name}] policy_oids: {exc}") from exc
        profiles[name] = Profile(
            name,
            table.usage,
            table.max_validity_days * 86400,
            policies,
            table.max_backdate_seconds,
        )
    return profiles


def load_subject_key(spki: bytes) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """Parse the subject public key and refuse weak or unsupported keys."""
    try:
        key = load_der_public_key(spki)
    except UnsupportedAlgorithm as exc:  # an algorithm or curve OpenSSL does not know
        raise SignerError(ErrorKind.WEAK_KEY, "key algorithm not supported") from exc
    except (ValueError, TypeError) as exc:
        raise SignerError(ErrorKind.BAD_REQUEST, "spki is not a DER SubjectPublicKeyInfo") from exc
    why = key_refusal(key)  # the policy the gateway applied to the CSR, applied again
    if why is not None:
        raise SignerError(ErrorKind.WEAK_KEY, why)
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    return key


def check_validity(
    profile: Profile, not_before: int, not_after: int, now: int, issuer_not_after: int
) -> None:
    if not_after <= not_before:
        raise SignerError(ErrorKind.PROFILE_VIOLATION, "not_after must be after not_before")
    if not_after - not_before > profile.max_validity_seconds:
        raise SignerError(
            ErrorKind.PROFILE_VIOLATION, f"validity longer than profile {profile.name} allows"
        )
    if not_before < now - profile.max_backdate_seconds:
        raise SignerError(ErrorKind.PROFILE_VIOLATION, "not_before is backdated too far")
    if not_before > now + 86400:
        raise SignerError(ErrorKind.PROFILE_VIOLATION, "not_before too far in the future")
    if not_after > issuer_not_after:
        raise SignerError(ErrorKind.PROFILE_VIOLATION, "certificate would outlive its issuer")
