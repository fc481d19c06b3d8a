"""Gateway metrics on an injected registry (``monitoring/`` uses exactly these names)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


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
            "ca_gateway_logins_total", "Successful logins, by kind (subscriber, officer)",
            ["kind"], registry=registry,
        )
        self.login_failures = Counter(
            "ca_gateway_login_failures_total",
            "Failed logins (wrong password, unknown or locked account), by kind",
            ["kind"], registry=registry,
        )
        self.account_locks = Counter(
            "ca_gateway_account_locks_total", "Accounts locked by consecutive failures, by kind",
            ["kind"], registry=registry,
        )
        self.captcha_failures = Counter(
            "ca_gateway_captcha_failures_total",
            "Captcha answers refused (wrong, unknown, used or expired)", registry=registry,
        )
