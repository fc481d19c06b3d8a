"""The operator page: static page under a strict CSP, officer-only JSON feed computed from the
gateway's own registry (rates and histogram percentiles as PromQL computes them)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway import appkeys
from gateway.operator.routes import SAMPLER
from gateway.operator.stats import quantile, snapshot
from tests.integration.conftest import active_subscriber

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_page_and_assets_under_strict_csp(new_client: Any) -> None:
    c = new_client()
    r = await c.call("GET", "/operator/")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    html = r.text
    assert re.findall(r"<script[^>]*>", html) == [
        '<script src="/operator/static/operator.js" defer>'
    ]
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    assert not re.search(r"<style", html)
    for name, kind in (("operator.js", "text/javascript"), ("operator.css", "text/css")):
        a = await c.call("GET", f"/operator/static/{name}")
        assert a.status == 200 and a.headers["Content-Type"].startswith(kind)
    assert (await c.call("GET", "/operator/static/../routes.py")).status == 404
    assert (await c.call("GET", "/operator/static/nope.js")).status == 404


async def test_stats_need_an_officer_session(new_client: Any, officer: Any) -> None:
    anonymous = new_client()
    r = await anonymous.call("GET", "/operator/api/stats")
    assert r.status == 401 and r.json["error"] == "unauthenticated"
    subscriber, _, _ = await active_subscriber(new_client, officer)
    assert (await subscriber.call("GET", "/operator/api/stats")).status == 401
    r = await officer.call("GET", "/operator/api/stats")
    assert r.status == 200, r.text
    body = r.json
    assert set(body["series"]) >= {
        "t",
        "certs_per_s",
        "issuance_p50_ms",
        "issuance_p99_ms",
        "queue_depth",
        "errors_5xx_per_s",
    }
    assert body["signer"]["status"] in ("down", "unknown")  # the stub signer never answers


async def test_series_from_the_registry(server: TestServer, officer: Any) -> None:
    app = server.app
    metrics, sampler = app[appkeys.METRICS], app[SAMPLER]
    sampler.snaps.clear()
    sampler.add(snapshot(app[appkeys.REGISTRY], at=1000.0))
    for _ in range(90):
        metrics.certificates_issued.labels(profile="signing", key="p256").inc()
        metrics.issuance_latency.labels(operation="issue").observe(0.012)
    for _ in range(10):
        metrics.certificates_issued.labels(profile="encryption", key="rsa2048").inc()
        metrics.issuance_latency.labels(operation="issue").observe(0.2)
    metrics.requests.labels("/api/v1/certificates", "POST", "503").inc(4)
    sampler.add(snapshot(app[appkeys.REGISTRY], at=1002.0))
    body = (await officer.call("GET", "/operator/api/stats")).json
    s = body["series"]
    assert s["t"] == [1002.0]
    assert s["certs_per_s"] == [50.0]
    assert s["errors_5xx_per_s"] == [2.0]
    assert 10 <= s["issuance_p50_ms"][0] <= 20  # in the 10-20 ms bucket
    assert 150 <= s["issuance_p99_ms"][0] <= 250  # in the 150-250 ms bucket
    assert body["totals"]["certificates_issued"] >= 100


async def test_quantile_matches_promql() -> None:
    older = {0.1: 0.0, 0.2: 0.0, float("inf"): 0.0}
    newer = {0.1: 50.0, 0.2: 100.0, float("inf"): 100.0}
    assert quantile(0.5, older, newer) == pytest.approx(0.1)
    assert quantile(0.75, older, newer) == pytest.approx(0.15)
    assert quantile(0.5, newer, newer) is None  # nothing observed in the interval
    assert quantile(0.99, older, {0.1: 0.0, 0.2: 0.0, float("inf"): 5.0}) == 0.2
