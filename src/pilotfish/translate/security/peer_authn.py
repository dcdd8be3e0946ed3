"""PeerAuthentication: the mutual-TLS mode a workload's inbound port accepts.

Theory of operation (Istio's precedence). Three scopes, most specific wins:

1. workload: a policy with a ``selector`` in the proxy's namespace whose
   labels the proxy has; its ``portLevelMtls`` overrides it per port;
2. namespace: a policy without a selector in the proxy's namespace;
3. mesh: a policy without a selector in the root namespace.

A mode of ``UNSET`` (or no ``mtls`` at all) inherits the next wider scope; the
mesh default is ``PERMISSIVE``. When a scope has several policies, the first
by name wins (Istio takes the oldest; names keep the choice deterministic).
A root-namespace policy with a selector is a workload policy for workloads of
the root namespace only, as in Istio. Ports are the workload's ports (the
ports the sidecar's inbound side serves), as ``portLevelMtls`` is in Istio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pilotfish.api.resource import Resource
from pilotfish.api.security.peer_authentication import PeerAuthenticationSpec
from pilotfish.model.snapshot import Snapshot

__all__ = ["KIND", "EffectiveMode", "PeerMtls", "peer_mtls"]

KIND = "PeerAuthentication"
EffectiveMode = Literal["STRICT", "PERMISSIVE", "DISABLE"]
DEFAULT_MODE: EffectiveMode = "PERMISSIVE"


@dataclass(frozen=True, slots=True)
class PeerMtls:
    """The resolved modes for one workload: ``mode`` for every port unless
    ``ports`` overrides it (only ports whose mode differs are listed)."""

    mode: EffectiveMode = DEFAULT_MODE
    ports: Mapping[int, EffectiveMode] = field(default_factory=dict)

    def for_port(self, port: int) -> EffectiveMode:
        return self.ports.get(port, self.mode)


def _spec(res: Resource) -> PeerAuthenticationSpec:
    spec = res.spec
    assert isinstance(spec, PeerAuthenticationSpec)
    return spec


def _selector(res: Resource) -> Mapping[str, str] | None:
    # An empty selector selects nothing more than the namespace: namespace-wide.
    selector = _spec(res).selector
    labels: Mapping[str, str] = selector.match_labels if selector is not None else {}
    return labels or None


def _inherit(mode: str | None, parent: EffectiveMode) -> EffectiveMode:
    if mode in ("STRICT", "PERMISSIVE", "DISABLE"):
        return mode  # type: ignore[return-value]
    return parent


def _mode_of(res: Resource | None, parent: EffectiveMode) -> EffectiveMode:
    if res is None:
        return parent
    mtls = _spec(res).mtls
    return _inherit(mtls.mode if mtls is not None else None, parent)


def _first(policies: list[Resource]) -> Resource | None:
    return min(policies, key=lambda r: r.name) if policies else None


def peer_mtls(snapshot: Snapshot, namespace: str, labels: Mapping[str, str]) -> PeerMtls:
    """The effective inbound mTLS modes of a workload of ``namespace`` with ``labels``."""
    policies = snapshot.of_kind(KIND)
    root = snapshot.root_namespace
    mesh = _first([p for p in policies if p.namespace == root and _selector(p) is None])
    ns_wide = _first([p for p in policies if p.namespace == namespace and _selector(p) is None])
    workload = _first(
        [
            p
            for p in policies
            if p.namespace == namespace
            and (sel := _selector(p)) is not None
            and all(labels.get(k) == v for k, v in sel.items())
        ]
    )
    mode = _mode_of(workload, _mode_of(ns_wide, _mode_of(mesh, DEFAULT_MODE)))
    ports: dict[int, EffectiveMode] = {}
    if workload is not None:
        for port, setting in sorted(_spec(workload).port_level_mtls.items()):
            port_mode = _inherit(setting.mode, mode)
            if port_mode != mode:
                ports[int(port)] = port_mode
    return PeerMtls(mode, ports)
