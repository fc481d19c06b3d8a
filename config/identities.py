"""The OS identities of the components, and how a daemon tells that it runs without them.

A compromised gateway must not be able to read the token PIN or open the token: that holds only
when the gateway and the signer run as different OS users. Production (the units in
``deploy/systemd/``) and ``make run`` as root use the accounts below; a developer's ``make run``
without root runs both daemons as the invoking user, and each daemon then says so once at start.

``ensure_identities()`` creates the accounts (idempotently, root only) with exactly the commands
other parts of the project and its tests use, so whoever runs first creates the same thing.
This module must not import ``pkcs11``: the gateway uses it too.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

SIGNER_USER = "ca-signer"
GATEWAY_USER = "ca-gateway"
SIGNER_CLIENTS_GROUP = "ca-signer-clients"  # may reach the signer's Unix socket
NOLOGIN = "/usr/sbin/nologin"
_NO_LOGIN_SHELLS = {"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"}
# set by `make run` without root, which starts both daemons as the invoking user
SHARED_IDENTITY_ENV = "HSM_CA_SHARED_IDENTITY"


@dataclass(frozen=True)
class Identity:
    """Who a daemon runs as: what ``subprocess.Popen(user=, group=, extra_groups=)`` takes."""

    user: str
    uid: int
    gid: int
    extra_groups: tuple[int, ...]


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _run(args: list[str]) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    # exit 9 = the name exists: another process created it between our check and the command
    if proc.returncode not in (0, 9):
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip()}")


def ensure_group(name: str) -> None:
    if not _group_exists(name):
        _run(["groupadd", "--system", name])


def ensure_user(name: str, *, groups: Iterable[str] = ()) -> None:
    """A system user with a primary group of the same name, no home and no login shell."""
    ensure_group(name)
    extra = list(groups)
    if not _user_exists(name):
        args = ["useradd", "--system", "--no-create-home", "--shell", NOLOGIN, "--gid", name]
        if extra:
            args += ["--groups", ",".join(extra)]
        _run([*args, name])
    for group in extra:  # a user created earlier without the group (by someone else's test)
        if name not in grp.getgrnam(group).gr_mem:
            _run(["usermod", "--append", "--groups", group, name])


def ensure_identities() -> None:
    """Create ``ca-signer``, ``ca-gateway`` and ``ca-signer-clients`` (the gateway is a member)."""
    if os.geteuid() != 0:
        raise PermissionError("creating service users needs root")
    ensure_group(SIGNER_CLIENTS_GROUP)
    ensure_user(SIGNER_USER)
    ensure_user(GATEWAY_USER, groups=[SIGNER_CLIENTS_GROUP])


def identity(user: str) -> Identity:
    """The uid, primary gid and supplementary groups of ``user`` as the system knows them."""
    pw = pwd.getpwnam(user)
    extra = tuple(sorted(g.gr_gid for g in grp.getgrall() if user in g.gr_mem))
    return Identity(user=user, uid=pw.pw_uid, gid=pw.pw_gid, extra_groups=extra)


def resolve_uid(value: str | int) -> int:
    """A user given by name or number (config keys accept both)."""
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    try:
        return pwd.getpwnam(str(value)).pw_uid
    except KeyError as exc:
        raise KeyError(f"no such user {value!r}") from exc


def resolve_gid(value: str | int) -> int:
    """A group given by name or number."""
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    try:
        return grp.getgrnam(str(value)).gr_gid
    except KeyError as exc:
        raise KeyError(f"no such group {value!r}") from exc


def shared_identity_reason(*, readable_secret: str | None = None) -> str | None:
    """Why this process is not running under a dedicated service account, or None.

    ``make run`` without root says so in the environment. Otherwise root, or an account with a
    login shell, is where a developer runs things: whatever else runs as that account shares
    its files.
    ``readable_secret`` is a file this process must not be able to read (the gateway passes the
    token PIN file): if it can, the boundary is off whatever the account is.
    """
    uid = os.geteuid()
    if os.environ.get(SHARED_IDENTITY_ENV):
        return f"`make run` without root starts signer and gateway both as uid {uid}"
    if readable_secret and os.access(readable_secret, os.R_OK):
        return f"this process (uid {uid}) can read {readable_secret}"
    if uid == 0:
        return "running as root"
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        return None  # a uid without an account (a container): nobody else is it by name
    if pw.pw_shell not in _NO_LOGIN_SHELLS:
        return f"running as the login user {pw.pw_name!r}"
    return None
