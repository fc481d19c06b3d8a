"""Samples of the gateway's Prometheus registry, turned into the operator page's series.

A sampler takes a snapshot of the few cumulative values the page draws every ``interval``
seconds and keeps the last ``keep`` of them; rates and latency percentiles come from the
difference between consecutive snapshots, computed the way PromQL's ``rate`` and
``histogram_quantile`` do (linear interpolation inside the bucket). Everything is read from the
same registry that ``GET /metrics`` exposes, so the page and Prometheus agree.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

ISSUANCE = "ca_gateway_issuance_duration_seconds"
HTTP_LATENCY = "ca_gateway_http_request_duration_seconds"


@dataclass
class Snapshot:
    at: float
    issued: float = 0.0
    requests: float = 0.0
    errors_5xx: float = 0.0
    errors_4xx: float = 0.0
    signer_errors: float = 0.0
    login_failures: float = 0.0
    # cumulative histogram buckets (upper bound -> count), summed over labels
    issuance: dict[float, float] = field(default_factory=dict)
    http: dict[float, float] = field(default_factory=dict)
    queue: float | None = None  # signer queue depth (items), None when the signer is down
    workers_ready: int | None = None
    workers: int | None = None
    signer_status: str = "unknown"


def snapshot(registry: CollectorRegistry, at: float | None = None) -> Snapshot:
    snap = Snapshot(at=time.time() if at is None else at)
    for family in registry.collect():
        for s in family.samples:
            name, labels, value = s.name, s.labels, s.value
            if name == "ca_gateway_certificates_issued_total":
                snap.issued += value
            elif name == "ca_gateway_http_requests_total":
                snap.requests += value
                status = labels.get("status", "")
                if status.startswith("5"):
                    snap.errors_5xx += value
                elif status.startswith("4"):
                    snap.errors_4xx += value
            elif name == "ca_gateway_signer_errors_total":
                snap.signer_errors += value
            elif name == "ca_gateway_login_failures_total":
                snap.login_failures += value
            elif name == ISSUANCE + "_bucket":
                le = float(labels["le"])
                snap.issuance[le] = snap.issuance.get(le, 0.0) + value
            elif name == HTTP_LATENCY + "_bucket":
                le = float(labels["le"])
                snap.http[le] = snap.http.get(le, 0.0) + value
    return snap


def quantile(q: float, older: dict[float, float], newer: dict[float, float]) -> float | None:
    """histogram_quantile over the increase between two cumulative bucket sets (seconds)."""
    bounds = sorted(newer)
    counts = [newer[b] - older.get(b, 0.0) for b in bounds]
    if not bounds or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # as PromQL: the highest finite bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def series(snaps: list[Snapshot]) -> dict[str, Any]:
    """One point per interval between consecutive snapshots."""
    points: dict[str, list[Any]] = {
        k: []
        for k in (
            "t",
            "certs_per_s",
            "requests_per_s",
            "errors_5xx_per_s",
            "errors_4xx_per_s",
            "signer_errors_per_s",
            "issuance_p50_ms",
            "issuance_p99_ms",
            "http_p50_ms",
            "http_p99_ms",
            "queue_depth",
        )
    }
    for a, b in itertools.pairwise(snaps):
        dt = b.at - a.at
        if dt <= 0:
            continue

        def rate(x: float, y: float, dt: float = dt) -> float:
            return round(max(0.0, y - x) / dt, 2)  # a counter reset reads as 0

        points["t"].append(round(b.at, 3))
        points["certs_per_s"].append(rate(a.issued, b.issued))
        points["requests_per_s"].append(rate(a.requests, b.requests))
        points["errors_5xx_per_s"].append(rate(a.errors_5xx, b.errors_5xx))
        points["errors_4xx_per_s"].append(rate(a.errors_4xx, b.errors_4xx))
        points["signer_errors_per_s"].append(rate(a.signer_errors, b.signer_errors))
        points["issuance_p50_ms"].append(_ms(quantile(0.5, a.issuance, b.issuance)))
        points["issuance_p99_ms"].append(_ms(quantile(0.99, a.issuance, b.issuance)))
        points["http_p50_ms"].append(_ms(quantile(0.5, a.http, b.http)))
        points["http_p99_ms"].append(_ms(quantile(0.99, a.http, b.http)))
        points["queue_depth"].append(b.queue)
    return points


class Sampler:
    def __init__(
        self, registry: CollectorRegistry, *, interval: float = 2.0, keep: int = 150
    ) -> None:
        self.registry = registry
        self.interval = interval
        self.snaps: deque[Snapshot] = deque(maxlen=keep + 1)

    def add(self, snap: Snapshot) -> None:
        self.snaps.append(snap)

    def body(self) -> dict[str, Any]:
        snaps = list(self.snaps)
        last = snaps[-1] if snaps else snapshot(self.registry)
        return {
            "interval_s": self.interval,
            "now": round(time.time(), 3),
            "totals": {
                "certificates_issued": last.issued,
                "http_requests": last.requests,
                "http_5xx": last.errors_5xx,
                "signer_errors": last.signer_errors,
                "login_failures": last.login_failures,
            },
            "signer": {
                "status": last.signer_status,
                "queue_depth": last.queue,
                "workers_ready": last.workers_ready,
                "workers": last.workers,
            },
            "series": series(snaps),
        }
