"""gateway.periodic: the one loop behind every gateway timer."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from gateway.periodic import Every, periodic, running


async def test_rounds_continue_after_a_failure_and_stop_with_the_context(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[int] = []

    async def job() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 2:
            raise RuntimeError("boom")

    last: list[bool] = []

    async def final() -> None:
        last.append(True)

    with caplog.at_level(logging.WARNING, logger="gateway.periodic"):
        async with running("test job", Every(0.01, job, last=final)):
            async with asyncio.timeout(5):  # a loop that died on the failure never gets here
                while len(rounds) < 4:
                    await asyncio.sleep(0.01)
        stopped = len(rounds)
        await asyncio.sleep(0.05)
    assert len(rounds) == stopped  # cancelled: no round after the context ends
    assert last == [True]  # the shutdown round ran once
    assert [r.getMessage() for r in caplog.records] == ["test job failed: boom"]
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "test job"]


async def test_first_delays_the_first_round() -> None:
    rounds: list[float] = []
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def job() -> None:
        rounds.append(loop.time() - start)

    async with running("delayed", Every(10.0, job, first=0.05)):
        await asyncio.sleep(0.02)
        assert rounds == []
        async with asyncio.timeout(5):
            while not rounds:
                await asyncio.sleep(0.01)
    assert rounds[0] >= 0.05 and len(rounds) == 1


async def test_a_plan_of_none_starts_nothing() -> None:
    ctx = periodic("off", lambda _app: None)
    gen = ctx(web.Application())
    before = len(asyncio.all_tasks())
    await gen.__anext__()
    assert len(asyncio.all_tasks()) == before
    with pytest.raises(StopAsyncIteration):
        await gen.__anext__()
