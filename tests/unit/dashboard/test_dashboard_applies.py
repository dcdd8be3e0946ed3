"""Matching configuration to a workload by host and by selector."""

from __future__ import annotations

from typing import Any

from pilotfish.dashboard.applies import applies_to, served_services


def _doc(kind: str, name: str, spec: dict[str, Any], ns: str = "default") -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec}


LABELS = {"app": "reviews", "version": "v2"}


def test_served_services_by_selector_and_namespace() -> None:
    services = [
        _doc("Service", "reviews", {"selector": {"app": "reviews"}}),
        _doc("Service", "reviews-v3", {"selector": {"app": "reviews", "version": "v3"}}),
        _doc("Service", "reviews", {"selector": {"app": "reviews"}}, ns="other"),
        _doc("Service", "headless", {}),
    ]
    assert served_services(services, "default", LABELS) == {"reviews"}


def test_hosts_in_all_spellings_and_other_namespaces() -> None:
    docs = [
        _doc("VirtualService", "short", {"hosts": ["reviews"]}),
        _doc("VirtualService", "short-elsewhere", {"hosts": ["reviews"]}, ns="other"),
        _doc("VirtualService", "fqdn", {"hosts": ["reviews.default.svc.cluster.local"]}, ns="x"),
        _doc("DestinationRule", "dr", {"host": "reviews.default"}),
        _doc("DestinationRule", "other-dr", {"host": "ratings"}),
    ]
    names = [f["name"] for f in applies_to(docs, "default", LABELS, {"reviews"})]
    assert names == ["short", "fqdn", "dr"]


def test_selectors_and_scopes() -> None:
    docs = [
        _doc("AuthorizationPolicy", "mine", {"selector": {"matchLabels": {"app": "reviews"}}}),
        _doc("AuthorizationPolicy", "v1-only", {"selector": {"matchLabels": {"version": "v1"}}}),
        _doc("PeerAuthentication", "ns-wide", {}),
        _doc("PeerAuthentication", "mesh", {}, ns="istio-system"),
        _doc("PeerAuthentication", "elsewhere", {}, ns="other"),
        _doc("Sidecar", "sc", {"workloadSelector": {"labels": {"version": "v2"}}}),
    ]
    found = {f["name"]: f["why"] for f in applies_to(docs, "default", LABELS, set())}
    assert found == {
        "mine": "selector app=reviews",
        "ns-wide": "namespace-wide",
        "mesh": "mesh-wide",
        "sc": "selector version=v2",
    }
