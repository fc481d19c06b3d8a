"""The signer's peer policy and its atomic socket, without a token.

The end-to-end proof (a process under another uid refused by the running daemon while the
file permissions would let it in) is in tests/integration/test_devstack.py.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from signer.peers import Peer, PeerPolicy, bind_unix_socket, peer_of


def test_policy_allows_root_itself_listed_uids_and_group_members() -> None:
    policy = PeerPolicy(own_uid=999, uids=frozenset({1234}), gids=frozenset({994}))
    assert policy.allows(Peer(pid=1, uid=0, gid=0, groups=()))
    assert policy.allows(Peer(pid=1, uid=999, gid=5, groups=()))
    assert policy.allows(Peer(pid=1, uid=1234, gid=5, groups=()))
    assert policy.allows(Peer(pid=1, uid=65534, gid=994, groups=()))  # primary group
    assert policy.allows(Peer(pid=1, uid=65534, gid=65534, groups=(7, 994)))  # supplementary
    assert not policy.allows(Peer(pid=1, uid=65534, gid=65534, groups=(7,)))
    assert not PeerPolicy(own_uid=999, uids=frozenset(), gids=frozenset()).allows(
        Peer(pid=1, uid=1000, gid=1000, groups=(1000,))
    )


def test_peer_credentials_come_from_the_kernel() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        peer = peer_of(a)
    finally:
        a.close()
        b.close()
    assert (peer.pid, peer.uid, peer.gid) == (os.getpid(), os.geteuid(), os.getegid())
    assert set(os.getgroups()) <= set(peer.groups) | {os.getegid()}


def test_socket_appears_with_its_final_mode_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "run" / "signer.sock"
    path.parent.mkdir()
    path.write_text("stale socket of an earlier run")
    old = os.umask(0)  # bind() alone would make it 0777
    try:
        sock = bind_unix_socket(path, mode=0o660, gid=None)
    finally:
        os.umask(old)
    try:
        st = path.lstat()
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert [p.name for p in path.parent.iterdir()] == ["signer.sock"]  # no private dir left
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))  # the renamed socket still accepts
        client.close()
    finally:
        sock.close()


def test_socket_is_never_bound_where_clients_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bind() then chmod() at the final path leaves a moment with the umask's mode: the bind
    must happen in a folder only the signer can enter."""
    bound: list[tuple[str, int]] = []
    real_bind = socket.socket.bind

    def spy(self: socket.socket, address: str) -> None:
        bound.append((address, stat.S_IMODE(os.stat(os.path.dirname(address)).st_mode)))
        real_bind(self, address)

    monkeypatch.setattr(socket.socket, "bind", spy)
    path = tmp_path / "signer.sock"
    bind_unix_socket(path, mode=0o660, gid=None).close()
    [(address, folder_mode)] = bound
    assert address != str(path) and folder_mode == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a socket to another group needs root")
def test_socket_gets_its_group(tmp_path: Path) -> None:
    path = tmp_path / "signer.sock"
    sock = bind_unix_socket(path, mode=0o660, gid=65534)
    try:
        assert path.lstat().st_gid == 65534
    finally:
        sock.close()
