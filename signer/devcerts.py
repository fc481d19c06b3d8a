"""Dev/test certificates for the signer's mutual-TLS transport: a small CA, a server
certificate for the signer and client certificates for gateways.

These keys guard the RPC connection, not certificates the CA issues, so they are ordinary
software keys (P-256) made with ``cryptography``; production deployments use their own
transport PKI. Nothing is overwritten: an existing file stops the run.

    python -m signer.devcerts OUT_DIR [--server-name 127.0.0.1] [--client gateway]

prints the ``[signer]`` and ``[gateway]`` keys that use the files, with each client's pin.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signer.tls import fingerprint

PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class Issued:
    """One certificate and its key on disk, with the pin the signer's config would name."""

    cert: Path
    key: Path
    fingerprint: str
    subject: str


@dataclass(frozen=True)
class TransportFiles:
    ca: Path
    server: Issued
    clients: dict[str, Issued]


def _name(cn: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    general: list[x509.GeneralName] = []
    for n in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            general.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(general)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)  # never overwrite
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def make_transport_certs(
    out: Path,
    *,
    server_names: tuple[str, ...] = ("127.0.0.1", "localhost"),
    clients: tuple[str, ...] = ("gateway",),
    organization: str = "CA transport (dev)",
    days: int = 365,
    now: dt.datetime | None = None,
) -> TransportFiles:
    """Write ``ca.crt``, ``server.crt``/``.key`` and ``<client>.crt``/``.key`` into ``out``
    (keys 0600). The server certificate names ``server_names`` (DNS names or IP addresses)
    for the clients' hostname check; client certificates are ``CN=<client>``."""
    now = now or dt.datetime.now(dt.UTC)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{organization} CA", organization)
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_new(out / "ca.crt", ca.public_bytes(PEM), 0o644)

    def issue(stem: str, cn: str, usage: x509.ObjectIdentifier, san: tuple[str, ...]) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, organization))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
        )
        if san:
            builder = builder.add_extension(_san(san), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        cert_path, key_path = out / f"{stem}.crt", out / f"{stem}.key"
        _write_new(key_path, _key_pem(key), 0o600)
        _write_new(cert_path, cert.public_bytes(PEM), 0o644)
        der = cert.public_bytes(serialization.Encoding.DER)
        return Issued(cert_path, key_path, fingerprint(der), cert.subject.rfc4514_string())

    server = issue("server", server_names[0], ExtendedKeyUsageOID.SERVER_AUTH, server_names)
    issued = {c: issue(c, c, ExtendedKeyUsageOID.CLIENT_AUTH, ()) for c in clients}
    return TransportFiles(ca=out / "ca.crt", server=server, clients=issued)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m signer.devcerts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="folder for the files (created; never overwritten)")
    parser.add_argument(
        "--server-name",
        action="append",
        dest="server_names",
        help="DNS name or IP address of the signer (repeatable; default 127.0.0.1 and localhost)",
    )
    parser.add_argument(
        "--client",
        action="append",
        dest="clients",
        help="client certificate CN=NAME (repeatable; default gateway)",
    )
    args = parser.parse_args(argv)
    try:
        files = make_transport_certs(
            args.out,
            server_names=tuple(args.server_names or ("127.0.0.1", "localhost")),
            clients=tuple(args.clients or ("gateway",)),
        )
    except FileExistsError as exc:
        print(f"devcerts: {exc.filename} exists; nothing is overwritten", file=sys.stderr)
        return 1
    pins = ", ".join(f'"{c.fingerprint}"' for c in files.clients.values())
    first = next(iter(files.clients.values()))
    print("[signer]")
    print('tcp = "127.0.0.1:8443"')
    print(f'tls_cert = "{files.server.cert}"')
    print(f'tls_key = "{files.server.key}"')
    print(f'tls_client_ca = "{files.ca}"')
    print(f"tls_allowed_clients = [{pins}]")
    print()
    print("[gateway]")
    print('signers = ["tls://127.0.0.1:8443"]')
    print(f'signer_tls_cert = "{first.cert}"')
    print(f'signer_tls_key_file = "{first.key}"')
    print(f'signer_tls_ca = "{files.ca}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
