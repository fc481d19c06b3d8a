"""Service accounts, and the daemons' judgement of whether they run under one.

Runs processes under other users, so the interesting cases need root (CI runs as root); they
use the runtime the service users execute (/opt/hsm-ca/venv, built by bootstrap as root).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from config import identities
from config.identities import GATEWAY_USER, SIGNER_CLIENTS_GROUP, SIGNER_USER

# the shared runtime (scripts/runtime.py): CA_RUNTIME_DIR names another than the default
RUNTIME_PYTHON = Path(os.environ.get("CA_RUNTIME_DIR", "/opt/hsm-ca")) / "venv" / "bin" / "python"
as_root = pytest.mark.skipif(
    os.geteuid() != 0 or not RUNTIME_PYTHON.exists(),
    reason="needs root and the runtime in /opt/hsm-ca (make bootstrap as root)",
)

REASON = """
import json, sys
from config.identities import shared_identity_reason
secret = sys.argv[1] if len(sys.argv) > 1 else None
print(json.dumps(shared_identity_reason(readable_secret=secret)))
"""


def reason_as(user: str, *args: str) -> str | None:
    pw = pwd.getpwnam(user)
    proc = subprocess.run(
        [str(RUNTIME_PYTHON), "-c", REASON, *args],
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


@as_root
def test_accounts_are_created_once_with_no_login_and_the_gateway_in_the_clients_group() -> None:
    identities.ensure_identities()
    identities.ensure_identities()  # idempotent
    for user in (SIGNER_USER, GATEWAY_USER):
        pw = pwd.getpwnam(user)
        assert pw.pw_shell == identities.NOLOGIN
        assert grp.getgrgid(pw.pw_gid).gr_name == user
        assert pw.pw_uid < 1000  # --system
    assert grp.getgrnam(SIGNER_CLIENTS_GROUP).gr_mem == [GATEWAY_USER]


@as_root
def test_root_and_login_users_are_told_the_boundary_is_off() -> None:
    assert identities.shared_identity_reason() == "running as root"
    assert reason_as("postgres") == "running as the login user 'postgres'"  # shell /bin/bash
    assert reason_as("nobody") is None  # a service account: no warning
    folder = Path(tempfile.mkdtemp(prefix="ca-identity-"))  # pytest's tmp_path is 0700
    os.chmod(folder, 0o755)
    secret = folder / "token.pin"
    secret.write_text("1234")
    os.chmod(secret, 0o644)  # a PIN file the gateway's account can read: boundary off
    assert reason_as("nobody", str(secret)) == f"this process (uid 65534) can read {secret}"
    os.chmod(secret, 0o600)
    assert reason_as("nobody", str(secret)) is None
    shutil.rmtree(folder)


def test_names_and_numbers_resolve() -> None:
    assert identities.resolve_uid("0") == 0 and identities.resolve_uid("root") == 0
    assert identities.resolve_gid(0) == 0 and identities.resolve_gid("root") == 0
    with pytest.raises(KeyError):
        identities.resolve_uid("no-such-user-here")
