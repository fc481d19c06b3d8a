"""CMP's own metrics, on the gateway's registry: messages by body type and outcome (the
PKIFailureInfo of a refusal), certificates by CMP operation."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class CmpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "ca_gateway_cmp_messages_total",
            "CMP requests by body type and outcome (ok or the PKIFailureInfo bit)",
            ["body", "outcome"],
            registry=registry,
        )
        self.certificates = Counter(
            "ca_gateway_cmp_certificates_total",
            "certificates issued through CMP, by request type (ir, cr, p10cr, kur)",
            ["operation"],
            registry=registry,
        )
