"""``ca-keys``: the security officer's command line. It parses and dispatches, nothing more.

Every verb takes ``--config`` (default ``$CA_CONFIG``, else ``var/ca.toml``). PINs come from the
configuration's secret files / environment variables or a terminal prompt, never from argv.
Expected failures print one line on stderr and return non-zero; they never show a traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from config.loader import ConfigError, RawConfig, load
from config.manifest import IssuerEntry, load_manifest, manifest_path
from config.token import ROOT_TOKEN
from hsm_config import ceremony, inventory, journal, keygen, rootcrl
from hsm_config.keygen import KeysError
from hsm_config.role_keygen import generate_role_key
from signer import role_keys
from signer.errors import SignerError


def _journal_issuers(cfg: RawConfig, action: str, entries: list[IssuerEntry]) -> None:
    """Record what the ceremony produced, with fingerprints a second person can compare."""
    for entry in entries:
        cert = entry.load_certificate()
        journal.record(
            cfg,
            action,
            entry.name,
            {
                "role": entry.role,
                "key_label": entry.key_label,
                "subject": cert.subject.rfc4514_string(),
                "serial": format(cert.serial_number, "x"),
                "certificate_sha256": cert.fingerprint(hashes.SHA256()).hex(),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "active": entry.active,
                "ocsp_key_label": entry.ocsp_key_label,
            },
        )


def _init_token(cfg: RawConfig, args: argparse.Namespace) -> int:
    """Both development tokens: the online one and the root's own (when configured)."""
    tcfgs = [keygen.load_token_config(cfg, need_so_pin=True)]
    if cfg.section(ROOT_TOKEN):
        tcfgs.append(keygen.load_root_token_config(cfg, need_so_pin=True))
    for tcfg in tcfgs:
        message = keygen.init_token(tcfg, args.exist_ok)
        print(message)
        if "already" not in message:
            journal.record(cfg, "token_initialised", tcfg.label, {"module": str(tcfg.module)})
    return 0


def _generate(cfg: RawConfig, args: argparse.Namespace) -> int:
    keygen.key_spec(args.type)
    with keygen.open_token(keygen.load_token_config(cfg), rw=True) as handle:
        key = keygen.generate(handle, args.label, args.type)
    print(f"generated {key.key_type} key {key.label!r} id {key.key_id.hex()} on the token")
    print("test signature verified")
    print(f"public key SHA-256 {key.fingerprint}")
    journal.record(
        cfg,
        "key_generated",
        key.label,
        {
            "key_type": key.key_type,
            "key_id": key.key_id.hex(),
            "public_key_sha256": key.fingerprint,
        },
    )
    return 0


def _ceremony(cfg: RawConfig, args: argparse.Namespace) -> int:
    new = ceremony.run_ceremony(cfg, ceremony.load_spec(Path(args.file)))
    _journal_issuers(cfg, "key_ceremony", new)
    for root in (e for e in new if e.role == "root"):
        _journal_root_crl(cfg, root)
    return 0


def _dev_ceremony(cfg: RawConfig, args: argparse.Namespace) -> int:
    if ceremony.dev_ceremony(cfg):
        entries = load_manifest(manifest_path(cfg))
        _journal_issuers(cfg, "key_ceremony", entries)
        for root in (e for e in entries if e.role == "root"):
            _journal_root_crl(cfg, root)
    return 0


def _journal_root_crl(cfg: RawConfig, root: IssuerEntry) -> None:
    crl = x509.load_der_x509_crl(root.crl_path.read_bytes())
    journal.record(
        cfg,
        "root_crl_signed",
        root.name,
        {
            "crl_number": crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number,
            "revoked_serials": [format(r.serial_number, "x") for r in crl],
            "next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None,
            "crl_sha256": hashlib.sha256(root.crl_path.read_bytes()).hexdigest(),
        },
    )


def _root_crl(cfg: RawConfig, args: argparse.Namespace) -> int:
    root = rootcrl.sign_root_crl(
        cfg, revoke=args.revoke or [], reason=args.reason, root_name=args.root, days=args.days
    )
    _journal_root_crl(cfg, root)
    return 0


def _token(cfg: RawConfig, args: argparse.Namespace) -> keygen.TokenConfig:
    if args.root:
        return keygen.load_root_token_config(cfg)
    return keygen.load_token_config(cfg)


def _list(cfg: RawConfig, args: argparse.Namespace) -> int:
    with keygen.open_token(_token(cfg, args), rw=False) as handle:
        rows = inventory.list_objects(handle)
    print(inventory.to_json(rows) if args.json else inventory.format_table(rows))
    return 0


def _check(cfg: RawConfig, args: argparse.Namespace) -> int:
    entries = load_manifest(manifest_path(cfg))
    with keygen.open_token(_token(cfg, args), rw=False) as handle:
        problems = inventory.check(handle, entries, root_token=args.root)
    if args.json:
        print(json.dumps({"ok": not problems, "problems": problems}, indent=2))
    else:
        for line in problems:
            print(f"FLAG: {line}")
        if not problems:
            print("all CA keys OK")
    return 1 if problems else 0


def _rotate(cfg: RawConfig, args: argparse.Namespace) -> int:
    entry = ceremony.rotate(cfg, key_type=args.type, name=args.name)
    _journal_issuers(cfg, "issuer_rotated", [entry])
    return 0


def _cmp_key(cfg: RawConfig, args: argparse.Namespace) -> int:
    generate_role_key(role_keys.CMP, cfg)
    return 0


def _audit_key(cfg: RawConfig, args: argparse.Namespace) -> int:
    generate_role_key(role_keys.AUDIT, cfg)
    return 0


Verb = Callable[[RawConfig, argparse.Namespace], int]
VERBS: dict[str, Verb] = {
    "init-token": _init_token,
    "generate": _generate,
    "ceremony": _ceremony,
    "dev-ceremony": _dev_ceremony,
    "list": _list,
    "check": _check,
    "rotate": _rotate,
    "audit-key": _audit_key,
    "cmp-key": _cmp_key,
    "root-crl": _root_crl,
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", help="configuration file (default: $CA_CONFIG, else var/ca.toml)"
    )
    parser = argparse.ArgumentParser(prog="ca-keys", description="CA key management on a token")
    # accepted before the verb too; the verb's own --config wins when both are given
    parser.add_argument("--config", dest="global_config", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    p = sub.add_parser("init-token", parents=[common], help="initialise a SoftHSM dev token")
    p.add_argument("--exist-ok", action="store_true", help="succeed if the token exists")
    p = sub.add_parser("generate", parents=[common], help="generate a CA key pair on the token")
    p.add_argument("--label", required=True)
    p.add_argument("--type", required=True, choices=sorted(keygen.KEY_TYPES))
    p = sub.add_parser("ceremony", parents=[common], help="root + issuing CA from a ceremony file")
    p.add_argument("file", help="reviewed ceremony file (see ceremony.example.toml)")
    sub.add_parser("dev-ceremony", parents=[common], help="development ceremony, once")
    for verb, text in (
        ("list", "keys and certificates on the token"),
        ("check", "flag CA keys that are not fit for purpose"),
    ):
        p = sub.add_parser(verb, parents=[common], help=text)
        p.add_argument("--json", action="store_true")
        p.add_argument("--root", action="store_true", help="the root token instead")
    p = sub.add_parser("rotate", parents=[common], help="new issuing key and certificate")
    p.add_argument("--type", choices=sorted(keygen.KEY_TYPES))
    p.add_argument("--name", help="issuer name and key label (default issuing-<n+1>)")
    sub.add_parser(
        "audit-key", parents=[common], help="the key that signs audit checkpoints ([ca] audit_*)"
    )
    sub.add_parser("cmp-key", parents=[common], help="the key that signs CMP answers ([ca] cmp_*)")
    p = sub.add_parser("root-crl", parents=[common], help="sign a new root CRL on the root token")
    p.add_argument(
        "--revoke",
        action="append",
        metavar="ISSUER",
        help="issuing CA (manifest name) to list as revoked; repeatable",
    )
    p.add_argument("--reason", default="unspecified", choices=sorted(rootcrl.REASONS))
    p.add_argument("--root", help="root CA name (default: the active issuer's root)")
    p.add_argument("--days", type=int, help="nextUpdate in days (default [ca] root_crl_days)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The token adapter logs retries as warnings; for an operator the one error line suffices.
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    try:
        cfg = load(args.config or args.global_config)
        return VERBS[args.verb](cfg, args)
    except KeysError as exc:
        print(f"ca-keys {args.verb}: {exc}", file=sys.stderr)
        return exc.exit_code
    except (ConfigError, SignerError) as exc:
        print(f"ca-keys {args.verb}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ca-keys {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
