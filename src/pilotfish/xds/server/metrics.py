"""Prometheus metrics of the xDS server, registered on a caller-supplied registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from pilotfish.xds.server.secret_access import DenyReason
from pilotfish.xds.types import ADS_PUSH_ORDER, TYPE_SHORT_NAMES

__all__ = ["XdsMetrics"]

_PUSH_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def type_label(type_url: str) -> str:
    """The ``type`` label value for a type URL: its short name (CDS, EDS, ...)."""
    return TYPE_SHORT_NAMES.get(type_url, "other")


class XdsMetrics:
    """The server's metrics. Never touches the global default registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.connected_proxies = Gauge(
            "pilotfish_xds_connected_proxies",
            "ADS streams currently connected.",
            registry=registry,
        )
        self.pushes = Counter(
            "pilotfish_xds_pushes_total",
            "DiscoveryResponses handed to proxy streams, by type.",
            ["type"],
            registry=registry,
        )
        self.resources_sent = Counter(
            "pilotfish_xds_resources_sent_total",
            "Resources carried by the DiscoveryResponses handed to proxy streams, by type "
            "(delta xDS sends only changed ones).",
            ["type"],
            registry=registry,
        )
        self.push_seconds = Histogram(
            "pilotfish_xds_push_seconds",
            "Time from a debounced change firing until every resulting push was queued.",
            buckets=_PUSH_BUCKETS,
            registry=registry,
        )
        # Backlog gauges (their values are read at scrape time, see XdsServer): what a
        # control plane that falls behind a steady stream of changes accumulates.
        self.queued_responses = Gauge(
            "pilotfish_xds_queued_responses",
            "Responses planned for proxy streams and not yet handed to gRPC, all streams.",
            registry=registry,
        )
        self.push_pending = Gauge(
            "pilotfish_xds_push_pending",
            "1 while a debounced push waits or runs, else 0.",
            registry=registry,
        )
        self.nacks = Counter(
            "pilotfish_xds_nacks_total",
            "DiscoveryResponses rejected by proxies, by type.",
            ["type"],
            registry=registry,
        )
        self.unknown_type_requests = Counter(
            "pilotfish_xds_unknown_type_requests_total",
            "DiscoveryRequests for type URLs this server does not serve.",
            registry=registry,
        )
        self.secret_denied = Counter(
            "pilotfish_xds_secret_denied_total",
            "Credential secrets a proxy asked for and was refused, by reason: plaintext "
            "(no verified identity), namespace (identity in another namespace), name "
            "(not a credential name).",
            ["reason"],
            registry=registry,
        )
        for url in ADS_PUSH_ORDER:  # export zero-valued series up front
            self.pushes.labels(type=type_label(url))
            self.resources_sent.labels(type=type_label(url))
            self.nacks.labels(type=type_label(url))
        for reason in DenyReason:
            self.secret_denied.labels(reason=reason.value)

    def count_inconsistent(self, source: Callable[[], int]) -> None:
        """Export ``source()`` (compositions found inconsistent so far, counted by
        the generator) as ``pilotfish_xds_inconsistent_configs_total``."""
        self.registry.register(_InconsistentCollector(source))


class _InconsistentCollector(Collector):
    def __init__(self, source: Callable[[], int]) -> None:
        self._source = source

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "pilotfish_xds_inconsistent_configs",
            "Proxy configurations generated that name a route configuration, load "
            "assignment or secret they do not hold (see /debug/syncz).",
            value=self._source(),
        )
