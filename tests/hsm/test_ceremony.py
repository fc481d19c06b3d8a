"""The CA ceremony, the dev ceremony and rotation on real SoftHSM tokens."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, ObjectClass

from config.loader import load
from config.manifest import load_manifest, manifest_path
from hsm_config import ceremony, keygen
from tests.support.softhsm import REPO, new_token, run_ca_keys, token_pins, write_config

OUTPUTS: list[str] = []  # every CLI output of this module, checked for PINs at the end


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_ca_keys(config, *args)
    OUTPUTS.extend([result.stdout, result.stderr])
    assert "Traceback" not in result.stderr
    return result


def ca_folder(config: Path) -> Path:
    return config.parent / "ca"


def openssl_verify(root: Path, cert: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", str(root), str(cert)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_chain_verifies_with_openssl(ca_config: Path) -> None:
    folder = ca_folder(ca_config)
    result = openssl_verify(folder / "root-1.pem", folder / "issuing-1.pem")
    assert result.returncode == 0, result.stdout + result.stderr


def test_root_and_issuing_extensions(ca_config: Path) -> None:
    root = load_cert(ca_folder(ca_config) / "root-1.pem")
    issuing = load_cert(ca_folder(ca_config) / "issuing-1.pem")
    assert root.subject == root.issuer
    assert issuing.issuer == root.subject
    # digitalSignature on neither: the issuing CA key signs certificates and CRLs only (OCSP
    # answers come from a delegated responder)
    for cert, path_len, digital_signature in ((root, None, False), (issuing, 0, False)):
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca and bc.value.path_length == path_len
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
        assert ku.value.digital_signature is digital_signature
        assert not ku.value.key_encipherment
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
        assert cert.serial_number.bit_length() >= 64
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = issuing.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == root_ski.digest
    assert issuing.not_valid_after_utc <= root.not_valid_after_utc
    assert issuing.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == (
        "Dev Issuing CA 1"
    )
    # the issuing CA names the root's CRL (signed in the ceremony, served by the gateway)
    cdp = issuing.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for n in cdp[0].full_name] == ["http://127.0.0.1:8080/crl/root-1.crl"]
    aia = issuing.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [a.access_location.value for a in aia] == ["http://127.0.0.1:8080/ca/root-1.crt"]


def test_certificates_stored_on_token(ca_config: Path) -> None:
    cfg = load(ca_config, environ={})
    for tcfg, label in (
        (keygen.load_root_token_config(cfg), "root-1"),
        (keygen.load_token_config(cfg), "issuing-1"),
    ):
        with keygen.open_token(tcfg, rw=False) as handle:
            on_token = handle.find_certificate(label)
            assert on_token == load_cert(ca_folder(ca_config) / f"{label}.pem")
            assert on_token.public_key() == handle.find_public_key(label)
            obj = next(
                iter(
                    handle.session.get_objects(
                        {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: label}
                    )
                )
            )
            assert bytes(obj[Attribute.ID]) == keygen.key_id(handle.session, label)
            assert bytes(obj[Attribute.SUBJECT]) == on_token.subject.public_bytes()


def _pkcs11_objects(config: Path, section: str) -> str:
    """``pkcs11-tool --list-objects`` (OpenSC, the real tool) logged into a token, with the PIN
    from that token's PIN file handed over on stdin-free ``--pin env:`` (never on argv)."""
    data = tomllib.loads(config.read_text())[section]
    pin = Path(data["pin_file"]).read_text().strip()
    result = subprocess.run(
        [
            "pkcs11-tool",
            "--module",
            data["module"],
            "--token-label",
            data["label"],
            "--login",
            "--pin",
            "env:CA_TEST_PKCS11_PIN",
            "--list-objects",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "CA_TEST_PKCS11_PIN": pin},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _private_key_labels(listing: str) -> set[str]:
    labels, in_private = set(), False
    for line in listing.splitlines():
        if not line.startswith(" "):
            in_private = line.startswith("Private Key Object")
        elif in_private and line.strip().startswith("label:"):
            labels.add(line.split(":", 1)[1].strip())
    return labels


def test_online_token_holds_no_root_private_key(ca_config: Path) -> None:
    """The root key is on its own token: the online token (the one the signer logs into)
    lists the issuing, OCSP responder, audit checkpoint and CMP protection keys only."""
    online = _private_key_labels(_pkcs11_objects(ca_config, "token"))
    root = _private_key_labels(_pkcs11_objects(ca_config, "roottoken"))
    assert online == {"issuing-1", "issuing-1-ocsp", "audit-1", "cmp-1"}, online
    assert root == {"root-1"}, root
    cfg = load(ca_config, environ={})
    assert keygen.load_root_token_config(cfg).label != keygen.load_token_config(cfg).label


def test_root_crl_from_the_ceremony(ca_config: Path) -> None:
    folder = ca_folder(ca_config)
    crl = x509.load_der_x509_crl((folder / "root-1.crl").read_bytes())
    root = load_cert(folder / "root-1.pem")
    assert crl.issuer == root.subject and crl.is_signature_valid(root.public_key())
    assert len(crl) == 0
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    assert crl.next_update_utc is not None
    assert (crl.next_update_utc - crl.last_update_utc).days == 365  # [ca] root_crl_days


def test_roottoken_must_be_its_own_token(ca_config: Path, tmp_path: Path) -> None:
    data = tomllib.loads(ca_config.read_text())
    data["roottoken"] = dict(data["token"])
    same = tmp_path / "same.toml"
    same.write_text(tomli_w.dumps(data))
    result = cli(same, "rotate")
    assert result.returncode == 2 and "own token" in result.stderr
    del data["roottoken"]
    same.write_text(tomli_w.dumps(data))
    result = cli(same, "rotate")
    assert result.returncode == 2 and "[roottoken]" in result.stderr


def test_manifest_written(ca_config: Path) -> None:
    entries = {e.name: e for e in load_manifest(manifest_path(load(ca_config, environ={})))}
    assert entries["root-1"].role == "root" and not entries["root-1"].active
    assert entries["issuing-1"].active and entries["issuing-1"].parent == "root-1"
    assert entries["issuing-1"].ocsp_key_label == "issuing-1-ocsp"
    assert (ca_folder(ca_config) / "ceremony-dev.toml").exists()


def test_dev_ceremony_is_idempotent(ca_config: Path) -> None:
    before = (ca_folder(ca_config) / "issuers.toml").read_bytes()
    result = cli(ca_config, "dev-ceremony")
    assert result.returncode == 0, result.stderr
    assert "already done" in result.stdout
    assert (ca_folder(ca_config) / "issuers.toml").read_bytes() == before


def test_second_ceremony_run_refused(ca_config: Path) -> None:
    folder = ca_folder(ca_config)
    pems = {p: p.read_bytes() for p in folder.glob("*.pem")}
    result = cli(ca_config, "ceremony", str(folder / "ceremony-dev.toml"))
    assert result.returncode == 2
    assert "already" in result.stderr
    assert {p: p.read_bytes() for p in folder.glob("*.pem")} == pems


def _spec_file(tmp_path: Path, root: str, issuing: str, root_label: str | None = None) -> Path:
    text = (REPO / "ceremony.example.toml").read_text()
    text = text.replace('"root-2025"', f'"{root}"', 1)
    text = text.replace('key_label = "root-2025"', f'key_label = "{root_label or root}"')
    text = text.replace('"issuing-2025-1"', f'"{issuing}"')
    path = tmp_path / "ceremony.toml"
    path.write_text(text)
    return path


def test_existing_output_file_refused_before_any_key(ca_config: Path, tmp_path: Path) -> None:
    spec = _spec_file(tmp_path, "root-x", "issuing-x")
    blocker = ca_folder(ca_config) / "issuing-x.pem"
    blocker.write_text("not mine")
    try:
        result = cli(ca_config, "ceremony", str(spec))
        assert result.returncode == 2
        assert "never overwrites" in result.stderr
        assert blocker.read_text() == "not mine"
        tcfg = keygen.load_token_config(load(ca_config, environ={}))
        with keygen.open_token(tcfg, rw=False) as handle:
            assert not keygen.label_in_use(handle.session, "root-x")
    finally:
        blocker.unlink()


def test_existing_label_refused(ca_config: Path, tmp_path: Path) -> None:
    spec = _spec_file(tmp_path, "root-y", "issuing-y", root_label="root-1")  # on the root token
    result = cli(ca_config, "ceremony", str(spec))
    assert result.returncode == 2
    assert "'root-1' already exists" in result.stderr
    assert not (ca_folder(ca_config) / "root-y.pem").exists()


def test_example_ceremony_on_fresh_token(tmp_path: Path) -> None:
    config = write_config(tmp_path, token=new_token())
    result = cli(config, "ceremony", str(REPO / "ceremony.example.toml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("certificate SHA-256") == 2
    folder = ca_folder(config)
    assert openssl_verify(folder / "root-2025.pem", folder / "issuing-2025-1.pem").returncode == 0
    root = load_cert(folder / "root-2025.pem")
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert root.signature_hash_algorithm is not None
    assert root.signature_hash_algorithm.name == "sha384"  # P-384 root signs with SHA-384
    check = cli(config, "check")
    assert check.returncode == 0
    for pin in token_pins(config):
        assert pin not in result.stdout + result.stderr + check.stdout + check.stderr


def test_rotate_keeps_old_issuer_inactive(ca_config: Path) -> None:
    result = cli(ca_config, "rotate", "--type", "p256")
    assert result.returncode == 0, result.stderr
    cfg = load(ca_config, environ={})
    entries = {e.name: e for e in load_manifest(manifest_path(cfg))}
    assert entries["issuing-2"].active and entries["issuing-2"].parent == "root-1"
    assert not entries["issuing-1"].active
    assert entries["issuing-1"].certificate_path.exists()
    folder = ca_folder(ca_config)
    assert openssl_verify(folder / "root-1.pem", folder / "issuing-2.pem").returncode == 0
    new = load_cert(folder / "issuing-2.pem")
    assert new.subject != load_cert(folder / "issuing-1.pem").subject
    assert isinstance(new.public_key(), ec.EllipticCurvePublicKey)
    tcfg = keygen.load_token_config(cfg)
    with keygen.open_token(tcfg, rw=False) as handle:
        assert handle.find_certificate("issuing-2") == new
        assert handle.find_public_key("issuing-1") is not None  # old key kept for CRL/OCSP
    assert entries["issuing-2"].ocsp_key_label == "issuing-2-ocsp"
    with keygen.open_token(tcfg, rw=False) as handle:
        assert handle.find_public_key("issuing-2-ocsp") is not None
    again = cli(ca_config, "rotate", "--name", "issuing-2")
    assert again.returncode == 2
    check = cli(ca_config, "check")
    assert check.returncode == 0, check.stdout
    check = cli(ca_config, "check", "--root")
    assert check.returncode == 0, check.stdout


def test_rotate_needs_the_root_token(ca_config_ec: Path, tmp_path: Path) -> None:
    """The issuing certificate is signed by the root key, which only the root token has: with
    the root token's PIN unreadable, rotation stops before it makes anything."""
    data = tomllib.loads(ca_config_ec.read_text())
    data["roottoken"]["pin_file"] = str(tmp_path / "missing.pin")
    config = tmp_path / "no-root.toml"
    config.write_text(tomli_w.dumps(data))
    before = (ca_folder(ca_config_ec) / "issuers.toml").read_bytes()
    result = cli(config, "rotate", "--name", "issuing-never")
    assert result.returncode == 1 and "roottoken" in result.stderr
    assert (ca_folder(ca_config_ec) / "issuers.toml").read_bytes() == before
    assert not (ca_folder(ca_config_ec) / "issuing-never.pem").exists()


def test_ec_ceremony(ca_config_ec: Path) -> None:
    folder = ca_folder(ca_config_ec)
    assert openssl_verify(folder / "root-1.pem", folder / "issuing-1.pem").returncode == 0
    issuing = load_cert(folder / "issuing-1.pem")
    assert isinstance(issuing.public_key(), ec.EllipticCurvePublicKey)
    assert issuing.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
    result = cli(ca_config_ec, "rotate", "--name", "issuing-ec-2", "--type", "rsa2048")
    assert result.returncode == 0, result.stderr
    cfg = load(ca_config_ec, environ={})
    active = [e.name for e in load_manifest(manifest_path(cfg)) if e.active]
    assert active == ["issuing-ec-2"]


def test_check_flags_certificate_key_mismatch(ca_config_ec: Path, tmp_path: Path) -> None:
    cfg = load(ca_config_ec, environ={})
    path = manifest_path(cfg)
    original = path.read_bytes()
    data = tomllib.loads(original.decode())
    data["issuers"]["root-1"]["certificate"] = "issuing-1.pem"  # wrong certificate for the key
    path.write_text(tomli_w.dumps(data))
    try:
        result = cli(ca_config_ec, "check", "--root")  # the root's key is on the root token
        assert result.returncode == 1
        assert "does not match key 'root-1'" in result.stdout
    finally:
        path.write_bytes(original)


def test_check_flags_a_root_key_on_the_online_token(ca_config_ec: Path) -> None:
    assert cli(ca_config_ec, "check").returncode == 0
    made = cli(ca_config_ec, "generate", "--label", "root-1", "--type", "p256")
    assert made.returncode == 0, made.stderr
    result = cli(ca_config_ec, "check")
    assert result.returncode == 1
    assert "root 'root-1': its private key is on the online token" in result.stdout


def test_load_spec_refuses_unknown_keys(tmp_path: Path) -> None:
    text = (REPO / "ceremony.example.toml").read_text().replace("path_len = 0", "pathlen = 0")
    path = tmp_path / "typo.toml"
    path.write_text(text)
    with pytest.raises(keygen.KeysError, match="pathlen"):
        ceremony.load_spec(path)


def test_pins_never_printed(ca_config: Path, ca_config_ec: Path) -> None:
    """Runs last: none of the commands above printed a PIN of either token."""
    assert len(OUTPUTS) > 10
    for config in (ca_config, ca_config_ec):
        for pin in token_pins(config):
            assert all(pin not in text for text in OUTPUTS)


def test_ceremony_journal_reaches_the_hash_chained_audit_log(tmp_path: Path) -> None:
    """Key events are journaled by ca-keys (which may run offline) and imported, once each,
    into the audit log by ca-admin; the chain still verifies."""
    import asyncio
    import os
    import subprocess
    import sys

    from config.loader import load as load_config
    from db.embedded import Cluster
    from hsm_config import journal as journal_mod
    from tests.support.softhsm import new_token, write_config

    config = write_config(tmp_path, "p256", token=new_token())
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, CA_CONFIG=str(config))
    subprocess.run([bin_dir / "ca-keys", "dev-ceremony"], env=env, check=True, capture_output=True)
    entries = journal_mod.read(journal_mod.journal_path(load_config(config, environ={})))
    assert sorted(e["action"] for e in entries) == sorted(
        [
            "audit_key_generated",
            "cmp_key_generated",
            "key_ceremony",
            "key_ceremony",
            "root_crl_signed",
        ]
    )
    assert sorted(e["target"] for e in entries) == [
        "audit-1",
        "cmp-1",
        "issuing-1",
        "root-1",
        "root-1",
    ]

    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="ca-pg-journal-"))
    os.chmod(root, 0o755)  # the server may run as the postgres user (tests run as root)
    cluster = Cluster(root / "pg")
    cluster.init(fast=True)
    cluster.start()
    try:
        env["DATABASE_URL"] = cluster.create_database("journal")
        admin = bin_dir / "ca-admin"
        out = subprocess.run([admin, "migrate"], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        for _ in range(2):  # the second import finds nothing new
            subprocess.run(
                [admin, "audit", "import-journal"], env=env, check=True, capture_output=True
            )

        async def events() -> list[tuple[str, str, str]]:
            import asyncpg

            conn = await asyncpg.connect(env["DATABASE_URL"])
            try:
                rows = await conn.fetch(
                    "SELECT action, target, details->>'certificate_sha256' AS fp FROM audit_events "
                    "WHERE action IN ('key_ceremony', 'root_crl_signed') ORDER BY id"
                )
                return [(r["action"], r["target"], r["fp"]) for r in rows]
            finally:
                await conn.close()

        rows = asyncio.run(events())
        assert [(a, t) for a, t, _ in rows] == [
            ("key_ceremony", "root-1"),
            ("key_ceremony", "issuing-1"),
            ("root_crl_signed", "root-1"),
        ]
        assert all(fp and len(fp) == 64 for _, _, fp in rows[:2])
        verify = subprocess.run([admin, "audit", "verify"], env=env, capture_output=True, text=True)
        assert verify.returncode == 0, verify.stdout
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
