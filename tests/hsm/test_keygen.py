"""Key generation, token initialisation and the key checks, on real SoftHSM tokens."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType, ObjectClass

from config.loader import load
from hsm_config import keygen
from tests.support.softhsm import (
    SOFTHSM_MODULE,
    new_token,
    run_ca_keys,
    token_pins,
    write_config,
)

PRIVATE_EXPECTED = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.ALWAYS_SENSITIVE: True,
    Attribute.NEVER_EXTRACTABLE: True,
    Attribute.LOCAL: True,
    Attribute.SIGN: True,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}
PUBLIC_EXPECTED = {
    Attribute.TOKEN: True,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config for a fresh, empty token (no ceremony)."""
    return write_config(tmp_path_factory.mktemp("keygen"), token=new_token())


@pytest.fixture(scope="module")
def outputs() -> list[str]:
    """Everything the CLI printed in this module, checked for PINs at the end."""
    return []


def cli(config: Path, outputs: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    result = run_ca_keys(config, *args)
    outputs.extend([result.stdout, result.stderr])
    assert "Traceback" not in result.stderr
    return result


def pkcs11_tool_objects(config: Path) -> dict[tuple[str, str], dict[str, str]]:
    """``pkcs11-tool --list-objects`` parsed into {(class, label): {field: value}}.

    The PIN goes through the environment (``--pin env:VAR``), not argv.
    """
    cfg = load(config, environ={})
    tcfg = keygen.load_token_config(cfg)
    out = subprocess.run(
        [
            "pkcs11-tool",
            "--module",
            str(SOFTHSM_MODULE),
            "--token-label",
            tcfg.label,
            "--login",
            "--pin",
            "env:TEST_TOKEN_PIN",
            "--list-objects",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "TEST_TOKEN_PIN": tcfg.pin},
    ).stdout
    objects: dict[tuple[str, str], dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in out.splitlines():
        if not line.startswith(" "):
            current = {"header": line.strip()}
            continue
        field, _, value = line.strip().partition(":")
        current[field.strip()] = value.strip()
        if field.strip() == "label":
            cls = current["header"].split(" Object")[0]
            objects[(cls, value.strip())] = current
    return objects


@pytest.mark.parametrize("key_type", ["rsa2048", "rsa3072", "rsa4096", "p256", "p384"])
def test_generate_each_type_with_ca_attributes(config: Path, key_type: str) -> None:
    label = f"k-{key_type}"
    tcfg = keygen.load_token_config(load(config, environ={}))
    with keygen.open_token(tcfg) as handle:
        key = keygen.generate(handle, label, key_type)
        priv = handle.session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
        pub = handle.session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=label)
        for attr, value in PRIVATE_EXPECTED.items():
            assert bool(priv[attr]) is value, attr
        for attr, value in PUBLIC_EXPECTED.items():
            assert bool(pub[attr]) is value, attr
        assert bytes(priv[Attribute.ID]) == bytes(pub[Attribute.ID]) == key.key_id
        assert len(key.key_id) == 16
        spec = keygen.KEY_TYPES[key_type]
        if spec.key_type is KeyType.RSA:
            assert isinstance(key.public_key, rsa.RSAPublicKey)
            assert key.public_key.key_size == spec.bits
        else:
            assert isinstance(key.public_key, ec.EllipticCurvePublicKey)
            assert key.public_key.curve.name == spec.curve

    tool = pkcs11_tool_objects(config)
    private = tool[("Private Key", label)]
    access = {a.strip() for a in private["Access"].split(",")}
    assert access == {"sensitive", "always sensitive", "never extractable", "local"}
    assert private["Usage"] == "sign"
    assert private["ID"] == key.key_id.hex()
    public = tool[("Public Key", label)]
    assert public["Usage"] == "verify"
    assert public["ID"] == key.key_id.hex()


def test_cli_generate_prints_fingerprint(config: Path, outputs: list[str]) -> None:
    result = cli(config, outputs, "generate", "--label", "cli-key", "--type", "p256")
    assert result.returncode == 0, result.stderr
    assert "cli-key" in result.stdout and "p256" in result.stdout
    assert "test signature verified" in result.stdout
    assert "public key SHA-256" in result.stdout


def test_existing_label_refused(config: Path, outputs: list[str]) -> None:
    cli(config, outputs, "generate", "--label", "dup", "--type", "p256")
    result = cli(config, outputs, "generate", "--label", "dup", "--type", "p256")
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_wrong_pin_refused_without_traceback(
    config: Path, outputs: list[str], tmp_path: Path
) -> None:
    data = load(config, environ={}).data
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("not-the-pin-0000\n")
    bad = dict(data)
    bad["token"] = {**data["token"], "pin_file": str(wrong)}
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text(tomli_w.dumps(bad))
    result = cli(bad_config, outputs, "generate", "--label", "never", "--type", "p256")
    assert result.returncode == 1
    assert "wrong PIN" in result.stderr
    assert "not-the-pin-0000" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_token_is_one_line(config: Path, outputs: list[str], tmp_path: Path) -> None:
    data = load(config, environ={}).data
    missing = dict(data)
    missing["token"] = {**data["token"], "label": "no-such-token"}
    path = tmp_path / "missing.toml"
    path.write_text(tomli_w.dumps(missing))
    result = cli(path, outputs, "list")
    assert result.returncode == 1
    assert "no-such-token" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_init_token_cli(outputs: list[str], tmp_path: Path) -> None:
    label = f"i-{os.urandom(4).hex()}"
    root_label = f"r-{os.urandom(4).hex()}"
    path = write_config(
        tmp_path,
        token=(label, "user-pin-1234", "so-pin-5678"),
        root_token=(root_label, "root-pin-1234", "root-so-5678"),
    )
    first = cli(path, outputs, "init-token")
    assert first.returncode == 0, first.stderr
    # both tokens: the online one and the root's own
    assert f"token {label!r} initialised" in first.stdout
    assert f"token {root_label!r} initialised" in first.stdout
    again = cli(path, outputs, "init-token")
    assert again.returncode == 2 and "already exists" in again.stderr
    ok = cli(path, outputs, "init-token", "--exist-ok")
    assert ok.returncode == 0 and "already initialised" in ok.stdout
    listed = cli(path, outputs, "list", "--json")  # the user PIN works
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    for text in outputs[-8:]:
        assert "user-pin-1234" not in text and "so-pin-5678" not in text


def test_init_token_refuses_non_softhsm(outputs: list[str], tmp_path: Path) -> None:
    path = write_config(tmp_path, token=("x", "1234", "5678"))
    data = load(path, environ={}).data
    data["token"]["module"] = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
    path.write_text(tomli_w.dumps(data))
    result = cli(path, outputs, "init-token")
    assert result.returncode == 2
    assert "SoftHSM" in result.stderr


def test_check_passes_on_clean_token_and_flags_bad_keys(outputs: list[str], tmp_path: Path) -> None:
    path = write_config(tmp_path, token=new_token())
    cli(path, outputs, "generate", "--label", "good", "--type", "p256")
    clean = cli(path, outputs, "check")
    assert clean.returncode == 0, clean.stdout
    assert "all CA keys OK" in clean.stdout

    tcfg = keygen.load_token_config(load(path, environ={}))
    with keygen.open_token(tcfg) as handle:
        # made on the token, but extractable and not sensitive
        handle.session.generate_keypair(
            KeyType.RSA,
            2048,
            store=True,
            label="leaky",
            id=b"\x01",
            private_template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False},
        )
        # made outside the token and imported: CKA_LOCAL is false
        soft = ec.generate_private_key(ec.SECP256R1())
        handle.session.create_object(
            {
                Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                Attribute.KEY_TYPE: KeyType.EC,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.SIGN: True,
                Attribute.LABEL: "imported",
                Attribute.EC_PARAMS: bytes.fromhex("06082a8648ce3d030107"),
                Attribute.VALUE: soft.private_numbers().private_value.to_bytes(32, "big"),
            }
        )
    bad = cli(path, outputs, "check")
    assert bad.returncode == 1
    flags = [line for line in bad.stdout.splitlines() if line.startswith("FLAG:")]
    assert any("'leaky'" in f and "extractable" in f for f in flags)
    assert any("'leaky'" in f and "not sensitive" in f for f in flags)
    assert any("'imported'" in f and "CKA_LOCAL" in f for f in flags)
    assert not any("'good'" in f for f in flags)
    as_json = json.loads(cli(path, outputs, "check", "--json").stdout)
    assert as_json["ok"] is False and len(as_json["problems"]) == len(flags)


def test_list_json_shows_attributes(config: Path, outputs: list[str]) -> None:
    result = cli(config, outputs, "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {(r["label"], r["cls"]): r for r in json.loads(result.stdout)}
    row = rows[("k-p384", "private")]
    assert row["key"] == "EC P-384"
    assert row["sensitive"] and not row["extractable"] and row["local"] and row["sign"]
    assert rows[("k-rsa3072", "public")]["key"] == "RSA 3072"
    table = cli(config, outputs, "list")
    assert "k-rsa2048" in table.stdout and "NEVX" in table.stdout


def test_pins_never_printed(config: Path, outputs: list[str]) -> None:
    """Runs last in this module: no command above printed a PIN."""
    assert outputs
    for pin in token_pins(config):
        for text in outputs:
            assert pin not in text


def test_root_token_must_not_be_the_online_token(tmp_path: Path) -> None:
    """A [roottoken] naming the online token's module and label is refused (exit 2)."""
    (tmp_path / "pin").write_text("1234\n")
    token = {"module": "/lib/softhsm.so", "label": "ca-dev", "pin_file": "pin"}
    path = tmp_path / "ca.toml"
    path.write_text(tomli_w.dumps({"token": token, "roottoken": token}))
    with pytest.raises(keygen.KeysError, match="names the online token"):
        keygen.load_root_token_config(load(path, environ={}))
    path.write_text(tomli_w.dumps({"token": token, "roottoken": {**token, "label": "root"}}))
    assert keygen.load_root_token_config(load(path, environ={})).label == "root"
