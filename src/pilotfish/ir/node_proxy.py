"""The IR of a node proxy: per ambient pod, what its node proxy opens for it.

A node proxy's configuration is a list of ``AmbientPod``: for each pod of its
host, the listeners it opens inside the pod's network namespace (outbound
capture, inbound capture, HBONE) and the clusters behind them. Mesh terms only;
``pilotfish.xds.build.node_proxy`` turns them into Envoy protos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pilotfish.ir.security import AuthzPolicy

__all__ = ["AmbientPod", "InboundPort", "NodeProxyConfig", "OutboundDestination", "Upstream"]


@dataclass(frozen=True, slots=True)
class Upstream:
    """One endpoint the source pod's traffic for a destination may go to.

    ``hbone``: the destination is an ambient pod, reached with HTTP/2 CONNECT on
    ``address:port`` (its node proxy's HBONE listener); otherwise it is a sidecar
    pod, reached with Istio mTLS on ``address:port`` directly.
    """

    address: str
    port: int
    identity: str  # the SPIFFE id the destination must present
    hbone: bool


@dataclass(frozen=True, slots=True)
class OutboundDestination:
    """A (service address, port) the pod's app may dial, and where it goes.

    ``authority`` is the CONNECT target sent in the tunnel (``<host>:<target
    port>``): the destination's node proxy picks the pod's port from it.
    """

    cluster: str
    address: str
    port: int
    authority: str
    hbone: bool
    upstreams: tuple[Upstream, ...]
    # The service's host and namespace (Istio's destination_service labels).
    hostname: str = ""
    service_namespace: str = ""


@dataclass(frozen=True, slots=True)
class InboundPort:
    """One port of the pod's app as the node proxy serves it."""

    port: int
    cluster: str
    mtls: Literal["STRICT", "PERMISSIVE", "DISABLE"]
    authz: tuple[AuthzPolicy, ...] = ()


@dataclass(frozen=True, slots=True)
class AmbientPod:
    """Everything the node proxy opens for one ambient pod."""

    name: str
    namespace: str
    ip: str
    netns_path: str
    identity: str  # the pod's SPIFFE id, also its SDS secret name at the node agent
    outbound: tuple[OutboundDestination, ...]
    inbound: tuple[InboundPort, ...]
    # The pod's workload facts for Istio's metric labels (``peer_labels.workload_facts``).
    facts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class NodeProxyConfig:
    pods: tuple[AmbientPod, ...] = ()
