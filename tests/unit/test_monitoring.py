"""monitoring/: promtool validates the scrape config and the alert rules (and runs their unit
tests); every metric named by alerts, dashboard and README exists in a live registry of gateway
and signer metrics, and every live metric is documented."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gateway.cmp.metrics import CmpMetrics
from gateway.metrics import GatewayMetrics
from signer.metrics import SignerMetrics

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
METRIC = re.compile(r"\b(ca_(?:gateway|signer)_[a-z0-9_]+)\b")
# names PromQL provides or Prometheus adds at scrape time
BUILTIN = {"up"}


def live_names() -> set[str]:
    """Sample names a scrape of gateway + signer shows (histogram parts, _total counters)."""
    names: set[str] = set()
    for build in (GatewayMetrics, SignerMetrics, CmpMetrics):
        registry = CollectorRegistry()
        build(registry)
        for family in registry.collect():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
            else:
                names.add(family.name)
    return names


def family_of(sample: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", sample)


def dashboard_exprs() -> list[str]:
    exprs = []
    for path in sorted((MONITORING / "dashboards").glob("*.json")):
        dash = json.loads(path.read_text(encoding="utf-8"))
        for panel in dash["panels"]:
            exprs.extend(t["expr"] for t in panel.get("targets", []))
    return exprs


def alert_exprs() -> list[str]:
    """The ``expr:`` values of alerts.yml (inline or folded ``>`` blocks); no YAML library is
    needed for this one file's shape, and promtool checks its syntax anyway."""
    lines = (MONITORING / "alerts.yml").read_text(encoding="utf-8").splitlines()
    exprs: list[str] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("expr:"):
            value = stripped[5:].strip()
            if value in (">", "|"):
                indent = len(lines[i]) - len(lines[i].lstrip())
                block = []
                i += 1
                while i < len(lines) and (
                    not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
                ):
                    block.append(lines[i].strip())
                    i += 1
                exprs.append(" ".join(block))
                continue
            exprs.append(value)
        i += 1
    return exprs


def alert_names() -> set[str]:
    text = (MONITORING / "alerts.yml").read_text(encoding="utf-8")
    return set(re.findall(r"^\s*- alert: (\w+)", text, re.MULTILINE))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if not Path(PROMTOOL).exists():
        pytest.fail("promtool not found: install Debian's prometheus package (make bootstrap)")
    return subprocess.run(
        [PROMTOOL, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_checks_config_and_rules() -> None:
    for args in (("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml")):
        proc = promtool(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_rule_unit_tests() -> None:
    proc = promtool("test", "rules", "tests/alerts_test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_required_alerts_exist() -> None:
    names = alert_names()
    assert len(alert_exprs()) == len(names)
    assert {
        "CASignerDown",
        "CATokenUnhealthy",
        "CAGatewayErrorRate",
        "CAIssuanceLatencyHigh",
        "CASignerQueueGrowing",
        "CACrlExpired",
    } <= names


def test_alert_and_dashboard_metrics_exist() -> None:
    live = live_names()
    exprs = alert_exprs() + dashboard_exprs()
    assert len(dashboard_exprs()) >= 15
    named = {m for e in exprs for m in METRIC.findall(e)}
    missing = sorted(named - live)
    assert not missing, f"metrics named in monitoring/ but not emitted: {missing}"
    # and a histogram named by its family would match nothing in PromQL
    assert not any(m in {family_of(x) for x in live} - live for m in named)


def test_dashboard_covers_the_issue() -> None:
    text = " ".join(dashboard_exprs())
    for needed in (
        "ca_gateway_http_requests_total",
        "ca_gateway_issuance_duration_seconds",
        "ca_gateway_certificates_issued_total",
        "ca_signer_queue_depth",
        "ca_signer_batch_size",
        "ca_signer_token_up",
        "ca_signer_item_duration_seconds",
        "ca_gateway_db_pool_connections",
        "ca_gateway_login_failures_total",
        "ca_gateway_account_locks_total",
    ):
        assert needed in text, needed


def test_readme_documents_every_metric() -> None:
    readme = (MONITORING / "README.md").read_text(encoding="utf-8")
    documented = set(METRIC.findall(readme))
    live = live_names()
    families = {family_of(n) for n in live}
    assert documented <= live | families, sorted(documented - (live | families))
    undocumented = sorted(n for n in live if n not in documented and family_of(n) not in documented)
    assert not undocumented, f"document these in monitoring/README.md: {undocumented}"


def test_metric_names_follow_conventions() -> None:
    for build in (GatewayMetrics, SignerMetrics, CmpMetrics):
        registry = CollectorRegistry()
        build(registry)
        for family in registry.collect():
            assert re.fullmatch(r"ca_(gateway|signer)_[a-z0-9_]+", family.name), family.name
            if family.type == "histogram" and family.name.endswith("duration"):
                pytest.fail(f"{family.name}: durations are in seconds")
            if "duration" in family.name or "timestamp" in family.name:
                assert family.name.endswith("_seconds"), family.name
