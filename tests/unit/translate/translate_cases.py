"""The translation golden cases: inputs, the fixed set of proxies, and running both stages.

Every case in ``tests/testdata/translate/in/<case>.yaml`` is rendered for the
same three proxies (``PROXIES``), unless a ``# proxies: <name> ...`` line at the
top of the file narrows them (only to keep large goldens readable); a
``# workload-certs: true`` line gives every proxy of the case a mesh
certificate (``ProxyView.workload_certs``), for the mesh mTLS cases; a
``# outbound-traffic-policy: REGISTRY_ONLY`` line sets the mesh config's
outbound traffic policy. Stage 1
(translate) gives each proxy its whole ``ir.ProxyConfig`` from
``pilotfish.translate.compose.compose``, the function the control plane's
generator is built from (``test_translate_compose`` checks they agree byte for
byte). Stage 2 builds those with ``pilotfish.xds.build``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import Message

from pilotfish import ir
from pilotfish.api.loader import load_text
from pilotfish.model.mesh_config import MeshConfig, OutboundTrafficPolicy
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.translate.compose import compose
from pilotfish.xds.build import build_all
from pilotfish.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
)

__all__ = [
    "IN_DIR",
    "OUT_DIR",
    "PROXIES",
    "STAGE2_KINDS",
    "BuiltCase",
    "TranslatedCase",
    "build_case",
    "case_names",
    "case_proxies",
    "case_views",
    "load_snapshot",
    "translate_case",
]

DATA_DIR = Path(__file__).parents[2] / "testdata" / "translate"
IN_DIR = DATA_DIR / "in"
OUT_DIR = DATA_DIR / "out"

PROXIES: dict[str, ProxyView] = {
    "sidecar-redirect": ProxyView(
        "sidecar",
        "default",
        labels=(("app", "reviews"), ("version", "v1")),
        interception="REDIRECT",
        bind_ip="0.0.0.0",
    ),
    "sidecar-explicit": ProxyView(
        "sidecar",
        "default",
        labels=(("app", "productpage"),),
        interception="NONE",
        bind_ip="127.0.0.5",
    ),
    "gateway": ProxyView(
        "gateway",
        "istio-system",
        labels=(("istio", "ingressgateway"),),
        bind_ip="127.0.0.1",
    ),
}

#: Proxies a case renders only when its ``# proxies:`` line names them.
NAMED_ONLY_PROXIES: dict[str, ProxyView] = {
    # The workload serving Gateway API Gateway "web" of namespace default.
    "gateway-api": ProxyView(
        "gateway",
        "default",
        labels=(("gateway.networking.k8s.io/gateway-name", "web"),),
        bind_ip="127.0.0.1",
    ),
}

# Golden file kind -> xDS type URL, for the stage-2 outputs.
STAGE2_KINDS: dict[str, str] = {
    "lds": LISTENER_TYPE,
    "rds": ROUTE_TYPE,
    "cds": CLUSTER_TYPE,
    "eds": ENDPOINT_TYPE,
    "sds": SECRET_TYPE,
}


@dataclass(frozen=True)
class TranslatedCase:
    """Stage 1 of a case: each proxy's whole IR."""

    proxies: dict[str, ir.ProxyConfig]


@dataclass(frozen=True)
class BuiltCase:
    """Stage 2 of a case: per proxy, the built protos by golden kind."""

    proxies: dict[str, dict[str, list[Message]]]


def case_names() -> list[str]:
    return sorted(p.stem for p in IN_DIR.glob("*.yaml"))


def _header(name: str) -> dict[str, str]:
    """The ``# key: value`` lines at the top of a case file."""
    out: dict[str, str] = {}
    for line in (IN_DIR / f"{name}.yaml").read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line.lstrip("# ").partition(":")
        out[key.strip()] = value.strip()
    return out


def case_proxies(name: str) -> list[str]:
    """The proxies a case renders: all of ``PROXIES`` unless its header narrows them."""
    header = _header(name)
    if "proxies" in header:
        names = header["proxies"].split()
        unknown = set(names) - set(PROXIES) - set(NAMED_ONLY_PROXIES)
        assert names and not unknown, f"{name}.yaml names unknown proxies {unknown}"
        return names
    return list(PROXIES)


def case_views(name: str) -> dict[str, ProxyView]:
    """The views of a case's proxies (with mesh certificates if its header says so)."""
    certs = _header(name).get("workload-certs", "").lower() == "true"
    return {
        proxy: dataclasses.replace(
            PROXIES.get(proxy) or NAMED_ONLY_PROXIES[proxy], workload_certs=certs
        )
        for proxy in case_proxies(name)
    }


def load_snapshot(name: str) -> Snapshot:
    """The snapshot of a case's input; fails on any load error (warnings are allowed)."""
    path = IN_DIR / f"{name}.yaml"
    result = load_text(path.read_text(encoding="utf-8"), str(path))
    errors = [d for d in result.diagnostics if d.is_error]
    assert not errors, f"{path} does not load cleanly: {errors}"
    policy = _header(name).get("outbound-traffic-policy", "ALLOW_ANY")
    assert policy in ("ALLOW_ANY", "REGISTRY_ONLY"), f"{name}.yaml: bad outbound-traffic-policy"
    mesh = MeshConfig(outbound_traffic_policy=OutboundTrafficPolicy(mode=policy))
    return build_snapshot(result.resources, 1, mesh=mesh)


def translate_case(name: str) -> TranslatedCase:
    snapshot = load_snapshot(name)
    return TranslatedCase(
        proxies={proxy: compose(snapshot, view) for proxy, view in case_views(name).items()}
    )


def build_case(translated: TranslatedCase) -> BuiltCase:
    proxies: dict[str, dict[str, list[Message]]] = {}
    for proxy, config in translated.proxies.items():
        built = build_all(config)
        proxies[proxy] = {kind: built[url] for kind, url in STAGE2_KINDS.items()}
    return BuiltCase(proxies)
