"""Who may talk to the signer over its Unix socket: the kernel's word for the peer, checked.

File permissions on the socket are the first fence; this is the second, and the one that holds
when the first is wrong (a socket left 0666, a directory someone widened): on every accepted
connection the kernel says which uid, gid and supplementary groups the connecting process had
(``SO_PEERCRED``, ``SO_PEERGROUPS``), and the server closes the connection before reading a byte
unless the peer is root, the signer's own user, a configured uid, or a member of a configured
group.

The socket itself is created with its final mode and group in a private directory and renamed
into place, so there is no moment in which it exists with wider permissions.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13; Python lacks the constant
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...]


def peer_of(sock: socket.socket) -> Peer:
    """The credentials the peer had when it connected, as the kernel recorded them."""
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    groups: tuple[int, ...] = ()
    size = 256 * 4
    while True:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size)
        except OSError as exc:
            if exc.errno == errno.ERANGE and size < 65536 * 4:
                size *= 16
                continue
            break  # an old kernel: primary gid only
        groups = struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4])
        break
    return Peer(pid=pid, uid=uid, gid=gid, groups=tuple(groups))


@dataclass(frozen=True)
class PeerPolicy:
    """Allowed peers: root and ``own_uid`` always, plus ``uids``, plus members of ``gids``."""

    own_uid: int
    uids: frozenset[int]
    gids: frozenset[int]

    @classmethod
    def build(cls, uids: Iterable[int], gids: Iterable[int]) -> PeerPolicy:
        return cls(own_uid=os.geteuid(), uids=frozenset(uids), gids=frozenset(gids))

    def allows(self, peer: Peer) -> bool:
        if peer.uid in (0, self.own_uid) or peer.uid in self.uids:
            return True
        return bool(self.gids & {peer.gid, *peer.groups})


def bind_unix_socket(path: Path, *, mode: int, gid: int | None) -> socket.socket:
    """A listening Unix socket at ``path`` that never existed with wider permissions.

    Bound in a fresh 0700 directory next to ``path`` (same file system), given its mode and
    group there, then renamed over ``path``: a client sees either the old socket (or nothing) or
    the finished one. A stale socket of a previous run is replaced by the rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=".bind-", dir=path.parent))  # mode 0700
    tmp = private / "s"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(tmp))
        os.chmod(tmp, mode)
        if gid is not None:
            os.chown(tmp, -1, gid)
        sock.listen(1024)
        os.rename(tmp, path)
    except BaseException:
        sock.close()
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        private.rmdir()
    sock.setblocking(False)
    return sock
