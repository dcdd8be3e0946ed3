"""Prometheus metrics of the CA, registered on the control plane's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from pilotfish.ca.records import IssuedRecords

__all__ = ["REJECT_REASONS", "CaMetrics"]

# Values of the ``reason`` label (exported at zero up front).
REJECT_REASONS = (
    "unauthenticated",
    "identity_mismatch",
    "invalid_csr",
    "bad_signature",
    "weak_key",
    "bad_request",
)

EXPIRING_WINDOW_SECONDS = 3600.0


class CaMetrics:
    """Issued / rejected counters and the expiring gauge (computed at scrape time)."""

    def __init__(self, registry: CollectorRegistry, records: IssuedRecords) -> None:
        self.registry = registry
        self.issued = Counter(
            "pilotfish_ca_certificates_issued",
            "Workload certificates signed by the mesh CA.",
            registry=registry,
        )
        self.rejected = Counter(
            "pilotfish_ca_certificates_rejected",
            "Certificate requests refused by the mesh CA, by reason.",
            ["reason"],
            registry=registry,
        )
        self.expiring = Gauge(
            "pilotfish_ca_certificates_expiring",
            "Newest certificates per pod that are still valid and expire within an hour.",
            registry=registry,
        )
        self.expiring.set_function(lambda: float(records.expiring(EXPIRING_WINDOW_SECONDS)))
        for reason in REJECT_REASONS:
            self.rejected.labels(reason=reason)
