"""``ca-admin``: database chores against the same configuration as the gateway.

Verbs: ``migrate``, ``create-officer LOGIN [--can-unlock]`` (password on stdin),
``unlock-officer LOGIN``, ``grant-unlock LOGIN`` / ``revoke-unlock LOGIN`` (the right to unlock
other officers from the RA pages), ``officer-factors LOGIN`` / ``remove-officer-factors LOGIN
[--id N]`` (second-factor recovery), ``audit verify`` (the hash chain, then every signed
checkpoint in the database and in the signer's checkpoint file), and ``db-start`` / ``db-stop``
/ ``db-url`` for the embedded cluster.

Only ``db-start`` (or any verb with ``--start-db``) starts the embedded cluster: a verb that finds
the database down says so and exits 1, so a stopped database is never restarted behind the
operator's back (someone may have stopped it on purpose).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import asyncpg

from admin import audit, database, officers
from admin.database import AdminError
from config.loader import ConfigError
from db.embedded import EmbeddedError
from db.migrate import MigrationError

VERBS: dict[str, Callable[[argparse.Namespace], int]] = {
    "migrate": database.cmd_migrate,
    "create-officer": officers.cmd_create_officer,
    "unlock-officer": officers.cmd_unlock_officer,
    "officer-factors": officers.cmd_officer_factors,
    "remove-officer-factors": officers.cmd_remove_officer_factors,
    "grant-unlock": officers.cmd_grant_unlock,
    "revoke-unlock": officers.cmd_revoke_unlock,
    "audit": audit.cmd_audit,
    "db-start": database.cmd_db_start,
    "db-stop": database.cmd_db_stop,
    "db-url": database.cmd_db_url,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ca-admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", help="configuration file (default: $CA_CONFIG or var/ca.toml)")
    p.add_argument(
        "--start-db",
        action="store_true",
        help="start the embedded database if it is not running (never otherwise)",
    )
    sub = p.add_subparsers(dest="verb", required=True)
    sub.add_parser("migrate", help="apply pending SQL migrations")
    for verb, text in (
        ("create-officer", "create an RA officer (password on stdin)"),
        ("unlock-officer", "unlock an RA officer locked by failed logins"),
        ("grant-unlock", "let an RA officer unlock other officers from the RA pages"),
        ("revoke-unlock", "take that right away again"),
    ):
        sp = sub.add_parser(verb, help=text)
        sp.add_argument("login")
        if verb == "create-officer":
            sp.add_argument(
                "--can-unlock",
                action="store_true",
                help="the officer may unlock other officers locked by failed logins",
            )
    sp = sub.add_parser("officer-factors", help="list an RA officer's second factors")
    sp.add_argument("login")
    sp = sub.add_parser(
        "remove-officer-factors",
        help="remove an RA officer's second factors (all, or --id N); audited",
    )
    sp.add_argument("login")
    sp.add_argument("--id", type=int, default=None, help="only this factor (officer-factors)")
    ap = sub.add_parser("audit", help="audit log tools")
    ap.add_argument("action", choices=["verify", "import-journal"])
    ap.add_argument("path", nargs="?", help="journal file (import-journal; default from [ca] dir)")
    ap.add_argument("--public-key", help="verify: the audit key's PEM (default from [ca])")
    ap.add_argument(
        "--checkpoints",
        help="verify: the signer's checkpoint file (default from [signer] audit_checkpoint_file)",
    )
    sub.add_parser("db-start", help="initialise and start the embedded cluster")
    sub.add_parser("db-stop", help="stop the embedded cluster")
    sub.add_parser("db-url", help="print the database URL in use")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run its verb, returning the verb's exit code; an error the operator
    can act on (bad input, a database that is down) is one line on stderr and exit 1, not a
    traceback."""
    args = _parser().parse_args(argv)
    try:
        return VERBS[args.verb](args)
    except (AdminError, ConfigError, EmbeddedError, MigrationError) as exc:
        print(f"ca-admin: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.CannotConnectNowError) as exc:
        print(f"ca-admin: the database is down or unreachable: {exc}", file=sys.stderr)
        return 1
    except asyncpg.PostgresError as exc:
        print(f"ca-admin: database: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
