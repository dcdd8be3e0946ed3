"""Core GATEWAY-HTTP tests that check statuses, edit objects or make endpoints
(ported from upstream's Go; see ``cases``).

- GatewayWithAttachedRoutes: listener statuses (attachedRoutes, ResolvedRefs,
  Programmed) and two route conditions; no requests.
- HTTPRouteObservedGenerationBump: the route's conditions observe its
  generation, an edit of its spec bumps the generation, and the conditions
  follow. Upstream sends no request; the case also checks that Envoy serves the
  edit (the backend changes from v1 to v2).
- HTTPRouteHTTPSListener: requests over TLS to the HTTPS listeners of
  ``same-namespace-with-https-listener``, picked by SNI.
- HTTPRouteServiceTypes: a selector-less Service and a headless one whose
  EndpointSlices the test fills with infra-backend-v1's pod addresses, as
  upstream's ``setupEndpointSlices`` does, and a headless Service with a
  selector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from cases import INFRA, V1, V2, Case, Expect, ListenerWant, _miss, _to
from harness import route_has_latest_conditions

from polling import poll

_ACCEPTED_RESOLVED = (("Accepted", "True"), ("ResolvedRefs", "True"))
_GENERATION_ROUTE = "observed-generation-bump"
_SLICES = ("manual-endpointslices", "headless-manual-endpointslices")


@dataclass
class CaseRun:
    """What a case's ``step`` may use: the config API (``harness.Api``), ``apply``
    (a manifest file, as ``pilotfish apply -f``), the mesh's pods
    (``state.json``'s ``pods``), a scratch directory and ``delete`` (a
    manifest file, as ``pilotfish delete -f``)."""

    api: Any
    apply: Callable[[Path], None]
    pods: Callable[[], dict[str, dict[str, Any]]]
    tmp: Path
    delete: Callable[[Path], None] | None = None


def _route(run: CaseRun, name: str) -> dict[str, Any]:
    path = f"apis/gateway.networking.k8s.io/v1/namespaces/{INFRA}/httproutes/{name}"
    return dict(run.api.get(path) or {})


def _latest(run: CaseRun, name: str) -> int:
    return route_has_latest_conditions(run.api, INFRA, name)


def _all_true(run: CaseRun, name: str, generation: int) -> bool:
    """Accepted and ResolvedRefs True in every parent, observing ``generation``."""
    parents = (_route(run, name).get("status") or {}).get("parents") or []
    found = {
        (c.get("type"), c.get("status"), c.get("observedGeneration"))
        for p in parents
        for c in p.get("conditions") or []
    }
    return bool(parents) and all((k, v, generation) in found for k, v in _ACCEPTED_RESOLVED)


def bump_generation(run: CaseRun) -> str | None:
    """Upstream's test body: patch backendRefs[0] to infra-backend-v2, then the
    conditions must be True again and observe the new, different generation."""
    before = poll(partial(_latest, run, _GENERATION_ROUTE), "conditions observing generation")
    doc = _route(run, _GENERATION_ROUTE)
    doc.pop("status", None)
    doc["metadata"].pop("resourceVersion", None)
    doc["spec"]["rules"][0]["backendRefs"][0]["name"] = V2
    edited = run.tmp / "observed-generation-bump-edited.yaml"
    edited.write_text(yaml.safe_dump(doc))
    run.apply(edited)
    after = poll(
        lambda: (g := _latest(run, _GENERATION_ROUTE)) != before and g,
        "a new generation observed by every condition",
    )
    poll(partial(_all_true, run, _GENERATION_ROUTE, after), "Accepted/ResolvedRefs True again")
    return None if after != before else f"generation stayed {before} after a spec change"


def _backend_addresses(run: CaseRun) -> list[tuple[str, str]]:
    """(pod name, IP) of infra-backend-v1's pods, from the mesh's state."""
    return sorted(
        (key.partition("/")[2], str(pod["ip"]))
        for key, pod in run.pods().items()
        if key.startswith(f"{INFRA}/{V1}-") and pod.get("ip")
    )


def fill_endpoint_slices(run: CaseRun) -> str | None:
    """Upstream's setupEndpointSlices: the IPv4 slices get one ready endpoint per
    infra-backend-v1 pod (the IPv6 ones stay empty: the pods have no IPv6)."""
    pods = _backend_addresses(run)
    if not pods:
        return f"no {V1} pod address in the mesh's state"
    docs = []
    for prefix in _SLICES:
        docs.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{prefix}-ip4",
                    "namespace": INFRA,
                    "labels": {"kubernetes.io/service-name": prefix},
                },
                "addressType": "IPv4",
                "ports": [{"name": "first-port", "port": 3000, "protocol": "TCP"}],
                "endpoints": [
                    {
                        "addresses": [ip],
                        "conditions": {"ready": True, "serving": True, "terminating": False},
                        "targetRef": {"kind": "Pod", "name": name, "namespace": INFRA},
                    }
                    for name, ip in pods
                ],
            }
        )
    patched = run.tmp / "endpointslices-filled.yaml"
    patched.write_text(yaml.safe_dump_all(docs))
    run.apply(patched)
    return None


_TWO = "gateway-with-two-attached-routes"
_UNRESOLVED = "unresolved-gateway-with-one-attached-unresolved-route"
_HTTPS_GATEWAY = "same-namespace-with-https-listener"
_NOT_PROGRAMMED = (("Programmed", "False"), ("ResolvedRefs", "False"))


def _https(host: str, backend: str = "", status: int = 200) -> Expect:
    if not backend:
        return _miss("/", status=status, host=host, https=True)
    return _to(backend, "/", host=host, https=True)


STATUS_CASES: tuple[Case, ...] = (
    Case(
        "GatewayWithAttachedRoutes",
        True,
        ("gateway-with-attached-routes.yaml",),
        "",
        ((INFRA, "http-route-1"), (INFRA, "http-route-2"), (INFRA, "http-route-3")),
        conditions=(
            (INFRA, "http-route-not-accepted", "Accepted", "False", "NoMatchingListenerHostname"),
            (INFRA, "http-route-4", "ResolvedRefs", "False", ""),
        ),
        listeners=(
            ListenerWant("gateway-with-one-attached-route", "http", 1, _ACCEPTED_RESOLVED),
            ListenerWant(_TWO, "http", 2, _ACCEPTED_RESOLVED),
            ListenerWant(_UNRESOLVED, "tls", 1, _NOT_PROGRAMMED),
        ),
    ),
    Case(
        "HTTPRouteObservedGenerationBump",
        True,
        ("httproute-observed-generation-bump.yaml",),
        "same-namespace",
        ((INFRA, _GENERATION_ROUTE),),
        (_to(V2, "/"),),
        step=bump_generation,
    ),
    Case(
        "HTTPRouteHTTPSListener",
        True,
        ("httproute-https-listener.yaml",),
        _HTTPS_GATEWAY,
        ((INFRA, "httproute-https-test"), (INFRA, "httproute-https-test-no-hostname")),
        (
            _https("example.org", V1),
            _https("unknown-example.org", status=404),
            _https("second-example.org", V2),
        ),
        conditions=(
            (INFRA, "httproute-https-test", "ResolvedRefs", "True", ""),
            (INFRA, "httproute-https-test-no-hostname", "ResolvedRefs", "True", ""),
        ),
    ),
    Case(
        "HTTPRouteServiceTypes",
        True,
        ("httproute-service-types.yaml",),
        "same-namespace",
        ((INFRA, "service-types"),),
        tuple(_to(V1, f"/{p}") for p in (*_SLICES, "headless")),
        conditions=((INFRA, "service-types", "ResolvedRefs", "True", ""),),
        step=fill_endpoint_slices,
    ),
)
