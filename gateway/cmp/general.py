"""The ``genm`` body: what a client may ask the CA without enrolling.

Answered are the CA certificates (caCerts, RFC 9483 4.3.1) and the key types the CA
certifies (signKeyPairTypes): RSA, and EC keys on P-256 and P-384. Other info types are
left out of the genp, as RFC 4210 5.3.19 allows, rather than refused.
"""

from __future__ import annotations

from pyasn1.codec.der import encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc5280, rfc9480

from gateway.cmp import messages

# (algorithm, named curve) of the keys the CA certifies: rsaEncryption, ecPublicKey P-256/P-384
KEY_PAIR_TYPES = (
    ("1.2.840.113549.1.1.1", None),
    ("1.2.840.10045.2.1", "1.2.840.10045.3.1.7"),
    ("1.2.840.10045.2.1", "1.3.132.0.34"),
)


def general(req: messages.Request, chain: list[bytes]) -> rfc9480.GenRepContent:
    """genp: the CA certificates (caCerts) and the key types the CA certifies
    (signKeyPairTypes); other info types are left out (RFC 4210 5.3.19)."""
    rep = rfc9480.GenRepContent()
    for itv in req.body:
        kind = itv["infoType"]
        if kind == rfc9480.id_it_caCerts:
            out = rfc9480.InfoTypeAndValue()
            out["infoType"] = kind
            certs = rfc9480.CaCertsValue()
            for der in chain:
                certs.append(messages.cmp_certificate(der))
            out["infoValue"] = encoder.encode(certs)
            rep.append(out)
        elif kind == rfc9480.id_it_signKeyPairTypes:
            out = rfc9480.InfoTypeAndValue()
            out["infoType"] = kind
            types = rfc9480.SignKeyPairTypesValue()
            for oid, curve in KEY_PAIR_TYPES:
                alg = rfc5280.AlgorithmIdentifier()
                alg["algorithm"] = univ.ObjectIdentifier(oid)
                alg["parameters"] = encoder.encode(
                    univ.ObjectIdentifier(curve) if curve else univ.Null("")
                )
                types.append(alg)
            out["infoValue"] = encoder.encode(types)
            rep.append(out)
    return rep
