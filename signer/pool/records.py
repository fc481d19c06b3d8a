"""What the pool keeps: requests (``Job``), batches on their way (``Sent``), one record per
worker process (``WorkerSlot``), and the state its parts share (``PoolState``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from signer.metrics import SignerMetrics
from signer.protocol import Outcome

refusal = Outcome.refused


@dataclass
class Job:
    """One RPC request: its items, where the results go, and when it must be done."""

    op: str
    items: list[Any]
    deadline: float | None
    future: asyncio.Future[list[Outcome]]
    results: list[Outcome | None] = field(default_factory=list)
    remaining: int = 0
    bulk: bool = False
    retried: set[int] = field(default_factory=set)  # items already re-run after a worker died

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)
        self.remaining = len(self.items)

    def settle(self, index: int, result: Outcome) -> None:
        if self.results[index] is None:
            self.results[index] = result
            self.remaining -= 1
            if self.remaining == 0 and not self.future.done():
                self.future.set_result(self.results)  # type: ignore[arg-type]


@dataclass
class Sent:
    """A batch on its way to (or at) a worker: which job's item each of its items is."""

    id: int
    parts: list[tuple[Job, int]]
    sent_at: float


@dataclass
class WorkerSlot:
    index: int
    process: Any = None
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.Task[None] | None = None
    state: str = "starting"
    detail: str = ""
    pid: int | None = None
    inflight: dict[int, Sent] = field(default_factory=dict)
    restarts: int = 0
    started_at: float = 0.0
    generation: int = 0
    last_seen: float = 0.0  # monotonic time of the worker's last message
    busy: float = 0.0  # how long its current batch had run, at its last heartbeat
    stalled_since: float | None = None
    # batches whose items were moved to other workers while this one stalled: a late answer
    # still counts if it comes first
    moved: dict[int, Sent] = field(default_factory=dict)

    @property
    def stalled(self) -> bool:
        return self.stalled_since is not None

    @property
    def public_state(self) -> str:
        return "stalled" if self.stalled else self.state

    @property
    def inflight_items(self) -> int:
        return sum(len(b.parts) for b in self.inflight.values())


class PoolState:
    """The state the pool's parts (``admission``, ``processes``, ``health``)
    share; ``WorkerPool`` sets it up and is all of them at once."""

    config_path: str
    metrics: SignerMetrics
    batch_max: int
    bulk_batch_max: int
    max_queue: int
    pipeline_depth: int
    stagger: float
    stall_seconds: float
    heartbeat_timeout: float
    slots: list[WorkerSlot]
    queue: deque[tuple[Job, int]]
    bulk: deque[tuple[Job, int]]
    loop: asyncio.AbstractEventLoop | None
    _watchdog: asyncio.Task[None] | None
    _batch_ids: int
    _ctx: Any
    _closing: bool
    _item_cost: dict[str, float]
    _ready_event: asyncio.Event

    if TYPE_CHECKING:  # what one part calls of another

        def ready_workers(self) -> int: ...

        def _dispatch(self) -> None: ...

        def _fail_queue(self, kind: Any, message: str) -> None: ...

        def _update_gauges(self) -> None: ...

        def _write(self, slot: WorkerSlot, msg: Any) -> None: ...

        def _spawn(self, slot: WorkerSlot, delay_index: int = 0) -> None: ...
