"""The signer's Prometheus metrics, built on an injected registry (no globals).

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` base units) and are the
ones the dashboards and alert rules in ``monitoring/`` use.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ITEM_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class SignerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.signatures = Counter(
            "ca_signer_signatures_total",
            "Signatures made on the token and verified, by operation",
            ["operation"],
            registry=registry,
        )
        self.key_signatures = Counter(
            "ca_signer_key_signatures_total",
            "C_Sign calls by the role of the key that made them: ca (issuing CA keys: "
            "certificates, CRLs, OCSP responder certificates) or ocsp (OCSP responder keys: "
            "OCSP answers)",
            ["role"],
            registry=registry,
        )
        for role in ("ca", "ocsp"):
            self.key_signatures.labels(role=role)
        self.requests = Counter(
            "ca_signer_requests_total",
            "RPC requests admitted, by operation",
            ["operation"],
            registry=registry,
        )
        self.errors = Counter(
            "ca_signer_errors_total",
            "Items that ended in an error, by error kind",
            ["kind"],
            registry=registry,
        )
        self.item_seconds = Histogram(
            "ca_signer_item_duration_seconds",
            "Time a worker spends on one item: build, sign on the token, verify",
            buckets=ITEM_BUCKETS,
            registry=registry,
        )
        self.request_seconds = Histogram(
            "ca_signer_request_duration_seconds",
            "Time from receiving an RPC request to sending its answer",
            ["operation"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "ca_signer_batch_size",
            "Items per batch handed to a worker",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "ca_signer_queue_depth", "Items waiting for a worker", registry=registry
        )
        self.workers = Gauge(
            "ca_signer_workers", "Worker processes by state", ["state"], registry=registry
        )
        self.token_up = Gauge(
            "ca_signer_token_up",
            "1 when at least one worker holds a logged-in session on the token",
            registry=registry,
        )
        self.token_faults = Counter(
            "ca_signer_token_faults_total",
            "Token faults after which a worker re-opened the module and session",
            registry=registry,
        )
        self.worker_restarts = Counter(
            "ca_signer_worker_restarts_total",
            "Worker processes that exited and were replaced",
            registry=registry,
        )
        self.connections = Gauge("ca_signer_connections", "Open RPC connections", registry=registry)
        self.tls_refused = Counter(
            "ca_signer_tls_refused_total",
            "TCP connections refused: failed TLS handshake (no or an untrusted client "
            "certificate) or a client certificate not in tls_allowed_clients",
            ["reason"],
            registry=registry,
        )
        self.refused_peers = Counter(
            "ca_signer_refused_peers_total",
            "Unix-socket connections closed unread: the peer's uid/gid is not allowed",
            registry=registry,
        )
