"""A CA as the worker uses it: certificate, token-backed key, and pre-built templates.

Builders in cryptography are immutable, so the parts of a certificate that are the same for
every certificate of an (issuer, profile, key family) triple (issuer name, basic constraints,
key usage, AKI, CRL distribution point, AIA, policies) are put into a builder once, and each
certificate only adds subject, key, serial, validity and SKI. That halves the Python work per
certificate, which matters because the token is the only thing that should be slow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID

from signer.errors import ErrorKind, SignerError
from signer.issuance.keys import PublicKey, RecordingKey, signature_hash
from signer.issuance.profile import Profile


@dataclass
class Issuer:
    name: str
    role: str
    active: bool
    certificate: x509.Certificate
    key: RecordingKey
    public_url: str
    hash_algorithm: hashes.HashAlgorithm = field(init=False)
    public_key: PublicKey = field(init=False)
    not_after: int = field(init=False)
    subject: x509.Name = field(init=False)
    _templates: dict[tuple[str, str], list[x509.Extension[x509.ExtensionType]]] = field(
        init=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        pub = self.certificate.public_key()
        if not isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise SignerError(ErrorKind.INTERNAL, f"issuer {self.name}: unsupported key type")
        self.public_key = pub
        self.hash_algorithm = signature_hash(pub)
        self.not_after = int(self.certificate.not_valid_after_utc.timestamp())
        self.subject = self.certificate.subject

    @property
    def crl_url(self) -> str:
        return f"{self.public_url}/crl/{self.name}.crl"

    @property
    def ocsp_url(self) -> str:
        return f"{self.public_url}/ocsp"

    @property
    def ca_issuers_url(self) -> str:
        return f"{self.public_url}/ca/{self.name}.crt"

    def authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        try:
            ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)
        except x509.ExtensionNotFound:
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.public_key)

    def template(
        self, profile: Profile, subject_key: PublicKey
    ) -> list[x509.Extension[x509.ExtensionType]]:
        """The profile's fixed extensions for this key family, each value encoded once.

        cryptography's encoder then copies bytes instead of walking Python objects for each
        certificate; the DER is identical (a unit test compares them).
        """
        family = "ec" if isinstance(subject_key, ec.EllipticCurvePublicKey) else "rsa"
        cached = self._templates.get((profile.name, family))
        if cached is not None:
            return cached
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (profile.key_usage(subject_key), True),
            (self.authority_key_identifier(), False),
            (
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            full_name=[x509.UniformResourceIdentifier(self.crl_url)],
                            relative_name=None,
                            reasons=None,
                            crl_issuer=None,
                        )
                    ]
                ),
                False,
            ),
            (
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier(self.ocsp_url),
                        ),
                        x509.AccessDescription(
                            AuthorityInformationAccessOID.CA_ISSUERS,
                            x509.UniformResourceIdentifier(self.ca_issuers_url),
                        ),
                    ]
                ),
                False,
            ),
        ]
        if profile.policy_oids:
            policies = [
                x509.PolicyInformation(x509.ObjectIdentifier(oid), None)
                for oid in profile.policy_oids
            ]
            extensions.append((x509.CertificatePolicies(policies), False))
        encoded = preencode(extensions)
        self._templates[(profile.name, family)] = encoded
        return encoded


def preencode(
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> list[x509.Extension[x509.ExtensionType]]:
    return [
        x509.Extension(
            value.oid, critical, x509.UnrecognizedExtension(value.oid, value.public_bytes())
        )
        for value, critical in extensions
    ]
