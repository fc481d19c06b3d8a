"""config.loader, config.token and config.manifest: parsing, overrides, secrets, the issuer
manifest."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config.loader import (
    ConfigError,
    apply_env_overrides,
    config_path,
    load,
    read_secret,
)
from config.manifest import IssuerEntry, ca_dir, load_manifest, manifest_path, save_manifest
from config.sections import CaSection, Section, convert_table, parse_section
from config.token import token_config

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- config ------------------------------------------------------------------------------------
def test_example_config_loads() -> None:
    cfg = load(REPO / "ca.example.toml", environ={})
    assert cfg.section("token")["label"] == "ca-dev"
    assert cfg.section("ca")["key_type"] == "rsa2048"
    assert cfg.section("missing") == {}


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CA_CONFIG", "/etc/ca/from-env.toml")
    assert config_path("explicit.toml") == Path("explicit.toml")
    assert config_path(None) == Path("/etc/ca/from-env.toml")
    monkeypatch.delenv("CA_CONFIG")
    assert config_path(None) == Path("var/ca.toml")


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.toml", environ={})
    bad = write(tmp_path / "bad.toml", "[token\nlabel = 1\n")
    with pytest.raises(ConfigError, match=str(bad)):
        load(bad, environ={})


def test_section_must_be_a_table(tmp_path: Path) -> None:
    cfg = load(write(tmp_path / "c.toml", 'ca = "x"\n'), environ={})
    with pytest.raises(ConfigError, match=r"\[ca\] must be a table"):
        cfg.section("ca")


def test_resolve_is_relative_to_config_folder(tmp_path: Path) -> None:
    cfg = load(write(tmp_path / "sub" / "c.toml", ""), environ={})
    assert cfg.resolve("ca") == (tmp_path / "sub" / "ca").resolve()
    assert cfg.resolve("/abs/path") == Path("/abs/path")


def test_env_overrides_take_the_type_of_the_value() -> None:
    data = {"gateway": {"port": 8080, "captcha": True, "signers": ["a"], "host": "h"}}
    out = apply_env_overrides(
        data,
        {
            "CA_GATEWAY_PORT": "8081",
            "CA_GATEWAY_CAPTCHA": "off",
            "CA_GATEWAY_SIGNERS": "unix:a, unix:b,",
            "CA_GATEWAY_HOST": "0.0.0.0",
            "CA_CONFIG": "ignored",
            "CA_NOSEP": "ignored",
            "CA_NEW_KEY": "v",
        },
    )
    assert out["gateway"] == {
        "port": 8081,
        "captcha": False,
        "signers": ["unix:a", "unix:b"],
        "host": "0.0.0.0",
    }
    assert out["new"] == {"key": "v"}
    assert data["gateway"]["port"] == 8080  # input untouched


@pytest.mark.parametrize(
    ("current", "text"), [(1, "x"), (True, "maybe"), (1.5, "fast")], ids=["int", "bool", "float"]
)
def test_env_override_with_wrong_type_refused(current: object, text: str) -> None:
    with pytest.raises(ConfigError, match="CA_SIGNER_VALUE"):
        apply_env_overrides({"signer": {"value": current}}, {"CA_SIGNER_VALUE": text})


def test_load_applies_env(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[gateway]\nport = 1\n")
    assert load(path, environ={"CA_GATEWAY_PORT": "2"}).section("gateway")["port"] == 2


class _AB(Section):
    a: int = 0
    b: int = 0


def test_unknown_keys_refused_all_named() -> None:
    convert_table({"a": 1}, "x", _AB)
    with pytest.raises(ConfigError, match=r"\[x\]: unknown key\(s\) c, d"):
        convert_table({"a": 1, "d": 2, "c": 3}, "x", _AB)


def test_read_secret_env_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load(write(tmp_path / "c.toml", ""), environ={})
    write(tmp_path / "pin", "  1234\n")
    sec = {"pin_env": "TEST_PIN_VAR", "pin_file": "pin"}
    monkeypatch.delenv("TEST_PIN_VAR", raising=False)
    assert read_secret(cfg, sec, "pin", "token") == "1234"
    monkeypatch.setenv("TEST_PIN_VAR", "from-env")
    assert read_secret(cfg, sec, "pin", "token") == "from-env"


def test_read_secret_missing(tmp_path: Path) -> None:
    cfg = load(write(tmp_path / "c.toml", ""), environ={})
    assert read_secret(cfg, {}, "pin", "token", required=False) is None
    with pytest.raises(ConfigError, match="never inline"):
        read_secret(cfg, {}, "pin", "token")
    with pytest.raises(ConfigError, match="cannot read"):
        read_secret(cfg, {"pin_file": "absent"}, "pin", "token")


def test_token_config_and_pin_not_in_repr(tmp_path: Path) -> None:
    write(tmp_path / "secrets" / "pin", "secret-pin-9876\n")
    path = write(
        tmp_path / "c.toml",
        '[token]\nmodule = "/m/libsofthsm2.so"\nlabel = "L"\npin_file = "secrets/pin"\n',
    )
    tcfg = token_config(load(path, environ={}))
    assert (tcfg.module, tcfg.label, tcfg.pin, tcfg.so_pin) == (
        Path("/m/libsofthsm2.so"),
        "L",
        "secret-pin-9876",
        None,
    )
    assert "secret-pin-9876" not in repr(tcfg)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('label = "L"\npin_env = "X"\n', "module and label"),
        ('module = "m"\nlabel = "L"\npin = "inline"\n', "unknown key"),
        ('module = "m"\nlabel = "L"\n', "pin_file or pin_env"),
    ],
)
def test_token_config_errors(tmp_path: Path, body: str, message: str) -> None:
    cfg = load(write(tmp_path / "c.toml", "[token]\n" + body), environ={})
    with pytest.raises(ConfigError, match=message):
        token_config(cfg)


# -- manifest ----------------------------------------------------------------------------------
def _cert(tmp_path: Path, name: str) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return write(tmp_path / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM).decode())


def test_manifest_paths(tmp_path: Path) -> None:
    cfg = load(write(tmp_path / "c.toml", '[ca]\ndir = "cadir"\n'), environ={})
    assert ca_dir(cfg) == (tmp_path / "cadir").resolve()
    assert manifest_path(cfg) == (tmp_path / "cadir" / "issuers.toml").resolve()


def test_manifest_missing_means_empty(tmp_path: Path) -> None:
    assert load_manifest(tmp_path / "issuers.toml") == []


def test_manifest_round_trip(tmp_path: Path) -> None:
    folder = tmp_path.resolve()
    entries = [
        IssuerEntry("root-1", "root", "root-1", _cert(folder, "root-1"), None, False),
        IssuerEntry("issuing-1", "issuing", "issuing-1", folder / "issuing-1.pem", "root-1", False),
        IssuerEntry("issuing-2", "issuing", "k2", _cert(folder, "issuing-2"), "root-1", True),
    ]
    path = folder / "issuers.toml"
    save_manifest(path, entries)
    assert not path.with_suffix(".tmp").exists()
    assert 'certificate = "root-1.pem"' in path.read_text()
    assert load_manifest(path) == entries
    assert entries[0].load_certificate().subject.rfc4514_string() == "CN=root-1"
    with pytest.raises(ConfigError, match="issuing-1"):
        entries[1].load_certificate()


def _manifest(tmp_path: Path, body: str) -> Path:
    return write(tmp_path / "issuers.toml", body)


ROOT = '[issuers.root-1]\nrole = "root"\nkey_label = "r"\ncertificate = "r.pem"\n'
ISSUING = (
    '[issuers.issuing-1]\nrole = "issuing"\nkey_label = "i"\ncertificate = "i.pem"\n'
    'parent = "root-1"\nactive = true\n'
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (ROOT, "exactly one issuer must be active, found 0"),
        (ROOT + ISSUING + ISSUING.replace("issuing-1", "issuing-2"), "found 2"),
        (ROOT.replace('"root"\n', '"root"\nactive = true\n'), "must be an issuing CA"),
        (ROOT.replace("root-1]", "Root_1]") + ISSUING, "must match"),
        (ROOT.replace('"root"', '"leaf"') + ISSUING, "role must be root or issuing"),
        (ROOT + ISSUING.replace("active", "enabled"), "unknown key"),
        ("[issuers\n", "issuers.toml"),
    ],
)
def test_manifest_refuses_inconsistency(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_manifest(_manifest(tmp_path, body))


def test_manifest_paths_resolve_next_to_manifest(tmp_path: Path) -> None:
    entries = load_manifest(_manifest(tmp_path, ROOT + ISSUING))
    assert [e.certificate_path for e in entries] == [
        (tmp_path / "r.pem").resolve(),
        (tmp_path / "i.pem").resolve(),
    ]
    assert os.path.isabs(entries[0].certificate_path)


def test_ca_section_defaults_and_bounds(tmp_path: Path) -> None:
    """[ca]'s defaults are CaSection's; a value out of bounds or an unknown key is refused."""
    ca = parse_section(load(write(tmp_path / "c.toml", ""), environ={}), "ca", CaSection)
    assert (ca.dir, ca.key_type, ca.root_crl_days, ca.audit_key_label) == (
        "ca",
        "rsa2048",
        365,
        "audit-1",
    )
    for body in ("[ca]\nroot_crl_days = 0\n", "[ca]\nroot_crl_day = 30\n"):
        cfg = load(write(tmp_path / "c.toml", body), environ={})
        with pytest.raises(ConfigError, match=r"\[ca\]"):
            parse_section(cfg, "ca", CaSection)
