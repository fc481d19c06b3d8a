"""db.batch.Batcher: adaptive batches, per-item results, a failed batch retried item by item."""

from __future__ import annotations

import asyncio

from db.batch import Batcher


async def test_concurrent_submissions_share_a_batch_and_keep_their_results() -> None:
    seen: list[list[int]] = []

    async def flush(items: list[int]) -> list[int | BaseException]:
        seen.append(list(items))
        await asyncio.sleep(0.01)
        return [ValueError(i) if i == 3 else i * 10 for i in items]

    b: Batcher[int, int] = Batcher(flush, max_items=4)
    results = await asyncio.gather(*(b.submit(i) for i in range(10)), return_exceptions=True)
    assert [r if not isinstance(r, ValueError) else "err" for r in results] == [
        0,
        10,
        20,
        "err",
        40,
        50,
        60,
        70,
        80,
        90,
    ]
    assert sorted(i for batch in seen for i in batch) == list(range(10))
    assert all(len(batch) <= 4 for batch in seen) and len(seen) <= 4
    # while one flush runs, the next submissions wait and go out together afterwards
    seen.clear()
    first = asyncio.ensure_future(b.submit(100))
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(b.submit(i)) for i in (101, 102)]
    await asyncio.gather(first, *later)
    assert seen == [[100], [101, 102]]


async def test_a_failing_batch_is_retried_item_by_item() -> None:
    calls: list[list[str]] = []

    async def flush(items: list[str]) -> list[str | BaseException]:
        calls.append(list(items))
        if "bad" in items:
            raise RuntimeError("constraint violated")
        return [s.upper() for s in items]

    b: Batcher[str, str] = Batcher(flush)
    results = await asyncio.gather(
        b.submit("a"), b.submit("bad"), b.submit("c"), return_exceptions=True
    )
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], RuntimeError)
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]


async def test_close_flushes_what_waits() -> None:
    async def flush(items: list[int]) -> list[int | BaseException]:
        return list(items)

    b: Batcher[int, int] = Batcher(flush, max_wait=10.0)
    fut = asyncio.ensure_future(b.submit(7))
    await asyncio.sleep(0)
    await b.close()
    assert await asyncio.wait_for(fut, 1) == 7


async def test_a_failed_batch_is_checked_before_it_is_retried() -> None:
    """A lost connection may hide a commit: what ``check`` finds done is answered from it and
    never flushed again; the rest is retried (a lone item too, once)."""
    flushed: list[list[str]] = []
    committed: dict[str, str] = {}

    async def flush(items: list[str]) -> list[str | BaseException]:
        flushed.append(list(items))
        if len(flushed) == 1:  # the first batch commits "a", then the connection is lost
            committed["a"] = "A (stored)"
            raise ConnectionError("connection lost at commit")
        return [s.upper() for s in items]

    async def check(items: list[str]) -> list[str | None]:
        return [committed.get(s) for s in items]

    b: Batcher[str, str] = Batcher(flush, check=check)
    assert await asyncio.gather(b.submit("a"), b.submit("b")) == ["A (stored)", "B"]
    assert flushed == [["a", "b"], ["b"]]

    # a lone item whose commit did not happen is retried once
    flushed.clear()
    committed.clear()
    assert await b.submit("c") == "C"
    assert flushed == [["c"], ["c"]]


async def test_when_the_check_fails_every_item_gets_the_original_error() -> None:
    async def flush(items: list[str]) -> list[str | BaseException]:
        raise ConnectionError("database gone")

    async def check(items: list[str]) -> list[str | None]:
        raise OSError("still gone")

    b: Batcher[str, str] = Batcher(flush, check=check)
    results = await asyncio.gather(b.submit("a"), b.submit("b"), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results), results
