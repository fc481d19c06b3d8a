"""Keep ``make run``'s daemons running: restart one that exits unexpectedly, with backoff.

A daemon that dies (a crash, ``kill -9``, the OOM killer) is logged, counted and started again
after a delay that doubles with each quick failure (0.25 s, 0.5 s, ... up to 10 s) and falls
back to the first step once the daemon has stayed up for 30 s. The other daemons and PostgreSQL
are not touched. Only ``stop()`` (Ctrl-C or SIGTERM on ``make run``) ends them, newest first.

Each daemon runs in its own session, so a Ctrl-C at the terminal reaches only ``make run``,
which then stops the daemons in order; and each gets SIGTERM if ``make run`` itself dies.
Production does the same with systemd (``Restart=on-failure``, ``deploy/systemd/``).
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from config.identities import Identity

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec, after setuid
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class DaemonSpec:
    """How to start one daemon: command, environment, and the identity it runs under."""

    name: str
    argv: list[str]
    env: dict[str, str]
    identity: Identity | None = None
    cwd: str | None = None


@dataclass
class _Child:
    spec: DaemonSpec
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_failures: int = 0
    restart_at: float | None = None
    restarts: int = 0


@dataclass
class Supervisor:
    say: Callable[[str], None]
    initial_backoff: float = 0.25
    max_backoff: float = 10.0
    stable_after: float = 30.0
    clock: Callable[[], float] = time.monotonic
    children: list[_Child] = field(default_factory=list)

    def start(self, spec: DaemonSpec) -> subprocess.Popen[bytes]:
        """Start ``spec`` now and supervise it from then on."""
        child = _Child(spec)
        self.children.append(child)
        return self._spawn(child)

    def _spawn(self, child: _Child) -> subprocess.Popen[bytes]:
        spec = child.spec
        kwargs: dict[str, object] = {}
        if spec.identity is not None:
            kwargs = {
                "user": spec.identity.uid,
                "group": spec.identity.gid,
                "extra_groups": list(spec.identity.extra_groups),
            }
        child.proc = subprocess.Popen(
            spec.argv,
            env=spec.env,
            cwd=spec.cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # single-threaded supervisor: fork-safe
            **kwargs,  # type: ignore[arg-type]
        )
        child.started_at = self.clock()
        child.restart_at = None
        return child.proc

    def process(self, name: str) -> subprocess.Popen[bytes] | None:
        for child in self.children:
            if child.spec.name == name:
                return child.proc
        return None

    def restarts(self, name: str) -> int:
        return next((c.restarts for c in self.children if c.spec.name == name), 0)

    def poll(self) -> None:
        """Notice exits and restart what is due; call this every fraction of a second."""
        now = self.clock()
        for child in self.children:
            proc = child.proc
            if child.restart_at is None and proc is not None and proc.poll() is not None:
                if now - child.started_at >= self.stable_after:
                    child.quick_failures = 0
                child.quick_failures += 1
                steps = child.quick_failures - 1
                delay = min(self.max_backoff, self.initial_backoff * 2**steps)
                child.restart_at = now + delay
                self.say(
                    f"{child.spec.name} exited unexpectedly ({_status(proc.returncode)}); "
                    f"restart #{child.restarts + 1} in {delay:.2f}s"
                )
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                pid = self._spawn(child).pid
                self.say(f"{child.spec.name} restarted (pid {pid}, restarts: {child.restarts})")

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM every daemon, newest first; SIGKILL what is still there after ``timeout``."""
        for child in reversed(self.children):
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
                try:
                    child.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                    child.proc.wait()
        total = sum(c.restarts for c in self.children)
        if total:
            counts = ", ".join(f"{c.spec.name} {c.restarts}" for c in self.children)
            self.say(f"restarts during this run: {counts}")


def _status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"
