"""``make run``'s supervisor on real child processes: restart with backoff, the rest untouched.

The same behaviour on the real daemons (kill -9 of the signer, then of the gateway, under
``scripts/devstack.py``) is in tests/integration/test_devstack.py.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from supervise import DaemonSpec, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def spec(name: str, argv: list[str] = SLEEPER) -> DaemonSpec:
    return DaemonSpec(name, argv, dict(os.environ))


def poll_until(sup: Supervisor, check, seconds: float = 10) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sup.poll()
        if check():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


def test_a_killed_daemon_comes_back_with_backoff_and_the_other_is_untouched() -> None:
    lines: list[str] = []
    sup = Supervisor(lines.append, initial_backoff=0.05)
    try:
        first = sup.start(spec("a"))
        other = sup.start(spec("b"))
        for attempt in (1, 2):
            victim = sup.process("a")
            assert victim is not None
            victim.send_signal(signal.SIGKILL)
            poll_until(sup, lambda v=victim: sup.process("a") is not v)
            assert sup.restarts("a") == attempt
        assert "a exited unexpectedly (signal SIGKILL); restart #1 in 0.05s" in lines
        assert "a exited unexpectedly (signal SIGKILL); restart #2 in 0.10s" in lines  # doubled
        assert sup.process("b") is other and other.poll() is None
        assert sup.restarts("b") == 0
        assert first.poll() is not None
    finally:
        sup.stop()
    assert all(c.proc is not None and c.proc.poll() is not None for c in sup.children)
    assert lines[-1] == "restarts during this run: a 2, b 0"


def test_an_exit_with_an_error_status_is_restarted_too() -> None:
    lines: list[str] = []
    sup = Supervisor(lines.append, initial_backoff=0.01)
    try:
        sup.start(spec("failing", [sys.executable, "-c", "raise SystemExit(3)"]))
        poll_until(sup, lambda: sup.restarts("failing") >= 2)
    finally:
        sup.stop()
    assert any("failing exited unexpectedly (exit status 3)" in line for line in lines)


def test_stop_ends_everything_and_nothing_restarts_afterwards() -> None:
    sup = Supervisor(lambda _line: None, initial_backoff=0.01)
    procs = [sup.start(spec("a")), sup.start(spec("b"))]
    sup.stop(timeout=5)
    assert [p.returncode for p in procs] == [-signal.SIGTERM, -signal.SIGTERM]
    assert sup.restarts("a") == 0 and sup.restarts("b") == 0


def test_a_daemon_that_stayed_up_starts_again_from_the_first_step() -> None:
    now = [0.0]
    lines: list[str] = []
    sup = Supervisor(lines.append, initial_backoff=0.5, stable_after=30, clock=lambda: now[0])
    try:
        for at in (0.0, 1.0, 100.0):  # two quick failures, then one after a long run
            now[0] = at
            proc = sup.process("a") or sup.start(spec("a"))
            proc.kill()
            proc.wait()
            sup.poll()
            now[0] += 60  # past any backoff: restart on the next poll
            sup.poll()
    finally:
        sup.stop()
    delays = [line.split(" in ")[1] for line in lines if "exited unexpectedly" in line]
    assert delays == ["0.50s", "1.00s", "0.50s"]
