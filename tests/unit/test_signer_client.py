"""The signer client under a signer that drops, resets, truncates and garbles its connections.

A real Unix-socket server in this process speaks the real frame format and misbehaves the way a
dying or restarting signer does. Whatever it does, every ``issue()`` and ``health()`` must end
in a result or the retryable ``SignerError(unavailable)``: anything else (the AssertionError the
gateway once turned into a 500 and a pending row that blocked the subscriber for ten minutes,
a TypeError from a malformed answer) reaches the gateway as a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signer.client import SignerClient
from signer.codec import HEADER, Frame
from signer.errors import ErrorKind, SignerError
from signer.protocol import IssueRequest

BEHAVIOURS = ("answer",) * 6 + ("close", "reset", "half", "silent", "garbled", "wrong count")


class FlakySigner:
    """Answers issue and health frames, or misbehaves at random (seeded, so reproducible)."""

    def __init__(self, path: Path, seed: int) -> None:
        self.path = path
        self.rng = random.Random(seed)
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.behave = False  # True: always answer
        self.force: str | None = None  # this behaviour, whatever ``behave`` says
        self.seen: Counter[str] = Counter()

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, path=str(self.path))

    async def stop(self) -> None:
        """Gone altogether: connections reset, the socket refuses (a restarting signer)."""
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        await self.server.wait_closed()
        self.path.unlink(missing_ok=True)
        self.server = None

    def abort_some(self) -> None:
        for w in list(self.writers):
            if self.rng.random() < 0.3:
                w.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                (length,) = HEADER.unpack(await reader.readexactly(HEADER.size))
                frame = Frame.decode(await reader.readexactly(length))
                what = self.force or ("answer" if self.behave else self.rng.choice(BEHAVIOURS))
                self.seen[what] += 1
                if frame.op == "health":
                    answer = Frame(id=frame.id, body={"status": "ok"}).encode()
                else:
                    n = len(frame.items) + (1 if what == "wrong count" else 0)
                    results = [{"der": b"certificate"}] * n
                    answer = Frame(id=frame.id, results=results).encode()
                if what in ("answer", "wrong count"):
                    writer.write(answer)
                elif what == "close":
                    writer.close()
                    return
                elif what == "reset":
                    writer.transport.abort()
                    return
                elif what == "half":
                    writer.write(answer[: len(answer) // 2])
                    await writer.drain()
                    writer.close()
                    return
                elif what == "garbled":  # a well-framed answer that says nothing sensible
                    writer.write(Frame(id=frame.id, results=5).encode())  # type: ignore[arg-type]
                # "silent": never answers; the caller's timeout ends the call
        except (asyncio.IncompleteReadError, ConnectionError, SignerError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


@contextlib.asynccontextmanager
async def flaky(seed: int) -> AsyncIterator[FlakySigner]:
    with tempfile.TemporaryDirectory(prefix="sc-") as d:
        signer = FlakySigner(Path(d) / "s.sock", seed)
        await signer.start()
        try:
            yield signer
        finally:
            if signer.server is not None:
                await signer.stop()


def request(i: int) -> IssueRequest:
    return IssueRequest(b"spki", (("2.5.4.3", f"c{i}"),), "signing", (1 << 70) + i, 0, 1)


async def outcome(coro: object) -> str:
    try:
        await coro  # type: ignore[misc]
        return "ok"
    except SignerError as exc:
        return exc.kind.value if exc.retryable else f"not retryable: {exc!r}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_every_call_ends_in_a_result_or_unavailable(seed: int) -> None:
    async with flaky(seed) as signer:
        client = SignerClient([f"unix:{signer.path}"], timeout=0.5, batch_max=8)
        outcomes: Counter[str] = Counter()
        try:
            for round_ in range(40):
                calls = [
                    outcome(client.issue(request(i))) for i in range(signer.rng.randint(1, 40))
                ]
                calls += [outcome(client.health()) for _ in range(signer.rng.randint(0, 4))]
                tasks = [asyncio.ensure_future(c) for c in calls]
                for _ in range(signer.rng.randint(0, 3)):
                    await asyncio.sleep(0)
                    signer.abort_some()
                if round_ % 10 == 5:  # the signer restarts while calls are in flight
                    await signer.stop()
                    await asyncio.sleep(0.01)
                    await signer.start()
                t0 = time.monotonic()
                for result in await asyncio.wait_for(asyncio.gather(*tasks), 10):
                    outcomes[result] += 1
                assert time.monotonic() - t0 < 5  # bounded by the client's 0.5 s timeouts
            # (health() says token_unavailable for a signer whose health body is not "ok")
            assert set(outcomes) <= {"ok", "unavailable", "token_unavailable"}, outcomes
            assert outcomes["ok"] and outcomes["unavailable"], outcomes
            assert {"close", "reset", "half", "garbled", "wrong count"} <= set(signer.seen)

            # once the signer behaves, every call succeeds on a fresh connection
            signer.behave = True
            await asyncio.sleep(1.1)  # past the client's down_until back-off
            results = await asyncio.gather(*(outcome(client.issue(request(i))) for i in range(50)))
            assert set(results) == {"ok"}, Counter(results)
        finally:
            await client.close()


async def test_a_reset_connection_fails_its_requests_and_the_next_call_reconnects() -> None:
    """A request waiting on a connection that is reset gets ``unavailable`` (not a hang until
    its timeout); the next call opens a new connection and is answered."""
    async with flaky(0) as signer:
        signer.behave = True
        client = SignerClient([f"unix:{signer.path}"], timeout=2)
        try:
            conn = client.connections[0]
            await conn.call(Frame(id=0, op="health"), 1)
            for _ in range(20):
                signer.force = "silent"  # the request waits on the old connection
                waiting = asyncio.ensure_future(conn.call(Frame(id=0, op="health"), 2))
                await asyncio.sleep(0.01)
                signer.force = None
                for w in list(signer.writers):
                    w.transport.abort()
                with pytest.raises(SignerError) as lost:
                    await waiting
                assert lost.value.kind is ErrorKind.UNAVAILABLE
                # at once: the client connects again rather than reusing the dead connection
                answer = await conn.call(Frame(id=0, op="health"), 2)
                assert answer.body == {"status": "ok"}
        finally:
            await client.close()
