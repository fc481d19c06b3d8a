"""Gateway metrics on an injected registry (``monitoring/`` uses exactly these names)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

ISSUANCE_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 10)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "ca_gateway_http_requests_total",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "ca_gateway_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["route"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.logins = Counter(
            "ca_gateway_logins_total",
            "Successful logins, by kind (subscriber, officer)",
            ["kind"],
            registry=registry,
        )
        self.login_failures = Counter(
            "ca_gateway_login_failures_total",
            "Failed logins (wrong password, unknown or locked account), by kind",
            ["kind"],
            registry=registry,
        )
        self.account_locks = Counter(
            "ca_gateway_account_locks_total",
            "Accounts locked by consecutive failures, by kind",
            ["kind"],
            registry=registry,
        )
        self.captcha_failures = Counter(
            "ca_gateway_captcha_failures_total",
            "Captcha answers refused (wrong, unknown, used or expired)",
            registry=registry,
        )
        self.rate_limited = Counter(
            "ca_gateway_rate_limited_total",
            "Attempts refused with 429 rate_limited (not evaluated), by the limit that was "
            "exhausted ([ratelimit] key)",
            ["limit"],
            registry=registry,
        )
        self.password_busy = Counter(
            "ca_gateway_password_busy_total",
            "Password verifications refused with 503 busy: the Argon2 queue was full",
            registry=registry,
        )
        self.password_in_flight = Gauge(
            "ca_gateway_password_hashing_in_flight",
            "Argon2 computations running or waiting in the bounded hashing executor",
            registry=registry,
        )
        # issuance (emitted by the lifecycle services)
        self.issuance_latency = Histogram(
            "ca_gateway_issuance_duration_seconds",
            "Time from a valid application to the stored, signed certificate (sign + store)",
            ["operation"],
            registry=registry,
            buckets=ISSUANCE_BUCKETS,
        )
        self.certificates_issued = Counter(
            "ca_gateway_certificates_issued_total",
            "Certificates issued and stored, by profile and subject key type (rsa2048, p256..)",
            ["profile", "key"],
            registry=registry,
        )
        self.certificates_revoked = Counter(
            "ca_gateway_certificates_revoked_total",
            "Certificates revoked, by reason",
            ["reason"],
            registry=registry,
        )
        self.signer_errors = Counter(
            "ca_gateway_signer_errors_total",
            "Signer calls that failed, by signer error kind (unavailable, overloaded, ...)",
            ["kind"],
            registry=registry,
        )
        # CRL and OCSP
        self.crl_next_update = Gauge(
            "ca_gateway_crl_next_update_timestamp_seconds",
            "nextUpdate of the latest stored CRL, Unix time, by issuer",
            ["issuer"],
            registry=registry,
        )
        self.crl_this_update = Gauge(
            "ca_gateway_crl_this_update_timestamp_seconds",
            "thisUpdate of the latest stored CRL, Unix time, by issuer",
            ["issuer"],
            registry=registry,
        )
        self.ocsp_responses = Counter(
            "ca_gateway_ocsp_responses_total",
            "OCSP answers, by source (stored: pre-signed, signed: signed on request, cached: "
            "the cached answer for a serial never issued)",
            ["source"],
            registry=registry,
        )
        self.ocsp_budget = Counter(
            "ca_gateway_ocsp_budget_total",
            "OCSP requests that needed a fresh signature, by outcome (fresh: signed within the "
            "budget; stored: over it, the stored answer served without the nonce; try_later: "
            "over it and nothing stored)",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("fresh", "stored", "try_later"):
            self.ocsp_budget.labels(outcome=outcome)
        self.ocsp_presigned = Counter(
            "ca_gateway_ocsp_presigned_total",
            "OCSP responses pre-signed and stored by the pre-signing job, by issuer",
            ["issuer"],
            registry=registry,
        )
        self.ocsp_presign_seconds = Histogram(
            "ca_gateway_ocsp_presign_duration_seconds",
            "Duration of one pre-signing run for one issuer",
            registry=registry,
            buckets=(0.1, 0.5, 1, 5, 15, 60, 180, 600, 1800),
        )
        self.db_pool = DbPoolCollector()
        registry.register(self.db_pool)
        # per-request label children, looked up once (``labels()`` locks and builds a key)
        self._requests_by: dict[tuple[str, str, int], Any] = {}
        self._latency_by: dict[str, Any] = {}

    def request_counter(self, route: str, method: str, status: int) -> Any:
        key = (route, method, status)
        child = self._requests_by.get(key)
        if child is None:
            child = self._requests_by[key] = self.requests.labels(route, method, str(status))
        return child

    def latency_histogram(self, route: str) -> Any:
        child = self._latency_by.get(route)
        if child is None:
            child = self._latency_by[route] = self.latency.labels(route)
        return child


class DbPoolCollector(Collector):
    """Database pool use, read from the asyncpg pool at scrape time (no polling task)."""

    def __init__(self) -> None:
        self.pool: Callable[[], Any] | None = None

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families(None))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pool = self.pool() if self.pool is not None else None
        return iter(self._families(pool))

    @staticmethod
    def _families(pool: Any) -> list[GaugeMetricFamily]:
        conns = GaugeMetricFamily(
            "ca_gateway_db_pool_connections",
            "Database pool connections, by state (in_use, idle)",
            labels=["state"],
        )
        size = GaugeMetricFamily(
            "ca_gateway_db_pool_max_connections", "Upper bound of the database pool"
        )
        if pool is not None:
            total, idle = pool.get_size(), pool.get_idle_size()
            conns.add_metric(["in_use"], total - idle)
            conns.add_metric(["idle"], idle)
            size.add_metric([], pool.get_max_size())
        return [conns, size]


def key_label(public_key: Any) -> str:
    """rsa2048, p256, ... from a subject public key (the label of certificates_issued)."""
    size = getattr(public_key, "key_size", 0)
    curve = getattr(public_key, "curve", None)
    if curve is not None:
        return {"secp256r1": "p256", "secp384r1": "p384"}.get(curve.name, curve.name)
    return f"rsa{size}"
