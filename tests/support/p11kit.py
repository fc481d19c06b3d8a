"""A network HSM for tests: one SoftHSM token served over a Unix socket by ``p11-kit server``.

The signer reaches it through p11-kit's client module (``P11_KIT_SERVER_ADDRESS`` names the
socket), exactly as it would reach a remote HSM through a vendor's network module. The test owns
the server process, so it can make the "HSM" vanish (``kill()``: SIGKILL to the server *and* the
``p11-kit-remote`` process it forks for every client connection, so open sessions die too) and
come back on the same socket (``start()``).

``p11-kit server`` is Debian's p11-kit 0.24; it must see the same ``SOFTHSM2_CONF`` as the code
that made the token, which it inherits from the test process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.support.softhsm import SOFTHSM_MODULE

CLIENT_MODULE = Path(
    os.environ.get("P11_KIT_CLIENT_MODULE", "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so")
)


def available() -> bool:
    """True when the p11-kit command and its client module are installed."""
    try:
        subprocess.run(["p11-kit", "server", "--help"], capture_output=True, check=False)
    except FileNotFoundError:
        return False
    return CLIENT_MODULE.exists() and SOFTHSM_MODULE.exists()


class P11KitServer:
    """``p11-kit server`` in the foreground, serving the token ``label`` on ``socket_path``."""

    def __init__(
        self,
        socket_path: Path,
        label: str,
        *,
        provider: Path = SOFTHSM_MODULE,
        log: Path | None = None,
    ) -> None:
        # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer than that
        if len(os.fsencode(socket_path)) > 100:
            raise ValueError(f"socket path too long for AF_UNIX: {socket_path}")
        self.socket_path = Path(socket_path)
        self.label = label
        self.provider = provider
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        """The value for ``P11_KIT_SERVER_ADDRESS``."""
        return f"unix:path={self.socket_path}"

    def client_env(self) -> dict[str, str]:
        """Environment that points a ``ca-signer`` at this server through the client module."""
        return {"CA_TOKEN_MODULE": str(CLIENT_MODULE), "P11_KIT_SERVER_ADDRESS": self.address}

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (again) on the same socket and wait until it accepts connections."""
        if self.running:
            raise RuntimeError("p11-kit server is already running")
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        # a killed server leaves its socket file behind; remove it so that waiting for the
        # socket below waits for *this* server
        self.socket_path.unlink(missing_ok=True)
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [
                    "p11-kit",
                    "server",
                    "--foreground",
                    "--provider",
                    str(self.provider),
                    "--name",
                    str(self.socket_path),
                    f"pkcs11:token={self.label}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if self.log else subprocess.DEVNULL,
                # own process group: kill() takes the per-connection p11-kit-remote children too
                start_new_session=True,
            )
        finally:
            if self.log:
                out.close()  # type: ignore[union-attr]
        self.starts += 1
        self._wait_listening(timeout)

    def _wait_listening(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"p11-kit server exited with status {self.proc.returncode}")
            if self.socket_path.exists():
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    try:
                        probe.connect(str(self.socket_path))
                        return
                    except OSError:
                        pass
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"p11-kit server did not listen on {self.socket_path} in {timeout}s")

    def kill(self) -> None:
        """SIGKILL the server and every connection it serves: the network HSM is gone."""
        self._signal_group(signal.SIGKILL)

    def stop(self) -> None:
        """Terminate politely, then by force."""
        self._signal_group(signal.SIGTERM, grace=3.0)
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals, grace: float = 5.0) -> None:
        proc = self.proc
        if proc is None:
            return
        # the group id is the server's pid (start_new_session); it outlives the leader while
        # p11-kit-remote children are alive, so signal it even when the leader already exited
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            return
        if sig == signal.SIGKILL:
            self.proc = None

    def __enter__(self) -> P11KitServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
