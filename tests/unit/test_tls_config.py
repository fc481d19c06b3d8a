"""Mutual TLS between gateway and signer, the parts that need no daemon: the gateway's
[gateway] signer_tls_* keys, the signer's client pins, the client's refusal to speak plain TCP
to a tls:// address."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from config.loader import ConfigError, RawConfig, load
from config.sections import parse_section
from gateway.config import GatewayConfig, gateway_config
from signer.client import SignerClient
from signer.config import SignerSection, _allowed_clients
from signer.devcerts import TransportFiles, make_transport_certs
from signer.tls import ClientPins


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TransportFiles:
    return make_transport_certs(tmp_path_factory.mktemp("pki"), clients=("gateway", "other"))


def _der(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)


def _gateway(tmp_path: Path, body: str) -> GatewayConfig:
    p = tmp_path / "ca.toml"
    p.write_text("[gateway]\n" + body)
    return gateway_config(load(p, environ={}), environ={})


def test_a_tls_signer_without_tls_settings_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs signer_tls_cert"):
        _gateway(tmp_path, 'signers = ["unix:/run/s.sock", "tls://10.0.0.5:8443"]\n')


def test_the_gateway_tls_settings_go_together(tmp_path: Path, pki: TransportFiles) -> None:
    with pytest.raises(ConfigError, match="go together"):
        _gateway(tmp_path, f'signers = ["tls://127.0.0.1:8443"]\nsigner_tls_ca = "{pki.ca}"\n')
    with pytest.raises(ConfigError, match="not tls://HOST:PORT"):
        _gateway(tmp_path, 'signers = ["tls://127.0.0.1"]\n')


def test_the_client_key_is_a_secret_read_from_a_file_or_the_environment(
    tmp_path: Path, pki: TransportFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = pki.clients["gateway"]
    common = (
        f'signers = ["tls://127.0.0.1:8443"]\nsigner_tls_cert = "{gw.cert}"\n'
        f'signer_tls_ca = "{pki.ca}"\n'
    )
    by_file = _gateway(tmp_path, common + f'signer_tls_key_file = "{gw.key}"\n')
    assert by_file.signer_tls is not None
    assert "PRIVATE KEY" not in repr(by_file.signer_tls)
    ctx = by_file.signer_tls.context()
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2

    monkeypatch.setenv("GATEWAY_RPC_KEY", gw.key.read_text())
    by_env = _gateway(tmp_path, common + 'signer_tls_key_env = "GATEWAY_RPC_KEY"\n')
    assert by_env.signer_tls is not None and by_env.signer_tls.context()

    other = pki.clients["other"]  # a key that does not belong to the certificate
    with pytest.raises(ConfigError, match="signer_tls"):
        _gateway(tmp_path, common + f'signer_tls_key_file = "{other.key}"\n')


def test_the_client_never_speaks_plain_tcp_to_a_tls_address() -> None:
    with pytest.raises(ValueError, match="ssl_context"):
        SignerClient(["tls://127.0.0.1:8443"])


def test_pins_match_fingerprints_in_any_spelling_and_exact_subjects(pki: TransportFiles) -> None:
    gw, other = pki.clients["gateway"], pki.clients["other"]
    gw_der, other_der = _der(gw.cert), _der(other.cert)
    hexed = gw.fingerprint.removeprefix("sha256:").upper()
    spelled = "SHA256:" + ":".join(hexed[i : i + 2] for i in range(0, 64, 2))
    pins = ClientPins.parse([spelled], "t")
    assert pins.admits(gw_der) and not pins.admits(other_der)

    by_subject = ClientPins.parse([other.subject], "t")
    assert by_subject.admits(other_der) and not by_subject.admits(gw_der)
    # a subject is matched as a whole: the CN alone does not name a certificate with an O too
    assert not ClientPins.parse(["CN=other"], "t").admits(other_der)


def _pins(value: object) -> ClientPins:
    """``tls_allowed_clients`` as the signer reads it: the parsed section, then the pins."""
    raw = RawConfig(path=Path("ca.toml"), data={"signer": {"tls_allowed_clients": value}})
    return _allowed_clients(parse_section(raw, "signer", SignerSection))


@pytest.mark.parametrize(
    "value",
    [[], ["sha256:abcd"], ["not a name"], "CN=gateway,O=Example", [1]],
)
def test_bad_pin_lists_are_config_errors(value: object) -> None:
    with pytest.raises(ConfigError):
        _pins(value)


def test_pins_from_the_environment_are_comma_separated_fingerprints(pki: TransportFiles) -> None:
    text = ",".join(c.fingerprint for c in pki.clients.values())
    pins = _pins(text)
    assert pins.fingerprints == {c.fingerprint for c in pki.clients.values()}
