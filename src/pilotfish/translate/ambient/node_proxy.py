"""A node proxy's configuration: ``(snapshot, NodeKey) -> NodeProxyConfig``.

Theory of operation. One node proxy per host carries the traffic of every
ambient pod there (Istio's ztunnel, on stock Envoy). For each pod it opens
three listeners inside the pod's network namespace, where the pod's iptables
rules send its traffic:

- outbound (15001, original destination): each mesh service address and port
  is a filter chain whose TCP proxy tunnels the connection in HBONE (HTTP/2
  CONNECT over mTLS) to a destination pod's port 15008, on a cluster of this
  source pod: its TLS presents the *source pod's* certificate and its sockets
  are created in the source pod's namespace, so the destination sees the
  source's address and identity. A service whose endpoints are sidecar pods is
  reached with Istio mTLS to the sidecar instead (the sidecar's inbound
  listener accepts it). Anything else passes through unchanged;
- HBONE (15008): terminates the mTLS (the pod's certificate, client
  certificates required) and the CONNECT streams; each stream is authorized
  against the pod's L4 AuthorizationPolicies with the peer's identity from the
  TLS connection, then its bytes go to the app on the port named by the
  CONNECT authority;
  A service that uses a waypoint (``translate.ambient.waypoints``) is
  tunnelled to the waypoint instead, the CONNECT target naming the service and
  its port, and the waypoint applies its L7 configuration;
- inbound (15006, original destination): Istio mTLS from sidecars and
  gateways, and plaintext unless PeerAuthentication is STRICT, each with the
  same L4 policies (network RBAC).

Upstream sockets to the app are made in the pod's namespace from 127.0.0.6,
the source address the pod's capture rules let through.

``node_key`` gathers every input besides configuration (the host's ambient
pods and every service's endpoints): it is the cache key, and
``node_proxy_config`` reads nothing else from the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pilotfish.ir.node_proxy import (
    AmbientPod,
    InboundPort,
    NodeProxyConfig,
    OutboundDestination,
    Upstream,
)
from pilotfish.model.ambient import DATAPLANE_AMBIENT, DATAPLANE_MODE_LABEL, HBONE_PORT
from pilotfish.model.snapshot import Snapshot
from pilotfish.peer_labels import workload_facts
from pilotfish.registry.model import MeshService
from pilotfish.translate.ambient.pods import LocalPod, node_pods
from pilotfish.translate.ambient.waypoints import Waypoint, hbone_upstreams, waypoints_of
from pilotfish.translate.security.authz import authz_policies
from pilotfish.translate.security.peer_authn import peer_mtls

__all__ = ["NodeKey", "ServiceDestination", "node_key", "node_proxy_config", "spiffe"]

_TLS_MODE_LABEL = "security.istio.io/tlsMode"


def spiffe(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True, slots=True)
class ServiceDestination:
    """One service address and port with the endpoints a node proxy tunnels to."""

    hostname: str
    namespace: str
    address: str
    port: int
    target_port: int
    hbone: bool
    upstreams: tuple[Upstream, ...]
    # Through a waypoint: its own cluster (and so a changed filter chain), so that
    # connections opened before the service took a waypoint are drained, not kept
    # on a path that skips its L7 policy.
    waypoint: bool = False


@dataclass(frozen=True, slots=True)
class NodeKey:
    """Everything a node proxy's configuration depends on besides configuration."""

    node: str
    pods: tuple[LocalPod, ...]
    destinations: tuple[ServiceDestination, ...]


def _via_waypoint(
    snapshot: Snapshot, svc: MeshService, waypoint: Waypoint
) -> list[ServiceDestination]:
    """``svc``'s ports, each tunnelled to the waypoint (CONNECT to ``host:port``, the
    service's own port: the waypoint routes by service, not by pod)."""
    identity = spiffe(snapshot.trust_domain, waypoint.namespace, waypoint.name)
    upstreams = tuple(
        Upstream(a, p, identity, True) for a, p in hbone_upstreams(snapshot, waypoint)
    )
    if not upstreams:
        return []  # not deployed yet: its callers get no route rather than skip it
    return [
        ServiceDestination(
            svc.hostname, svc.namespace, svc.addresses[0], sp.port, sp.port, True, upstreams, True
        )
        for sp in svc.ports
    ]


def _destinations(snapshot: Snapshot) -> tuple[ServiceDestination, ...]:
    td = snapshot.trust_domain
    waypoints = waypoints_of(snapshot)
    out = []
    for hostname, svc in sorted(snapshot.registry.services.items()):
        if not svc.addresses:
            continue
        if hostname in waypoints:
            out += _via_waypoint(snapshot, svc, waypoints[hostname])
            continue
        for sp in svc.ports:
            instances = snapshot.registry.instances_of(hostname, sp.port)
            ambient, sidecars = [], []
            for inst in instances:
                labels: Mapping[str, str] = dict(inst.labels)
                identity = spiffe(td, inst.namespace or svc.namespace, inst.service_account)
                if labels.get(DATAPLANE_MODE_LABEL) == DATAPLANE_AMBIENT:
                    ambient.append((inst, Upstream(inst.address, HBONE_PORT, identity, True)))
                elif labels.get(_TLS_MODE_LABEL) == "istio":
                    sidecars.append((inst, Upstream(inst.address, inst.port, identity, False)))
            # One kind per destination: a service of ambient pods is tunnelled, a
            # service of sidecar pods gets Istio mTLS (a service of both kinds
            # uses its ambient pods only).
            chosen = ambient or sidecars
            if not chosen:
                continue
            out.append(
                ServiceDestination(
                    hostname,
                    svc.namespace,
                    svc.addresses[0],
                    sp.port,
                    chosen[0][0].port,
                    bool(ambient),
                    tuple(sorted((u for _, u in chosen), key=lambda u: (u.address, u.port))),
                )
            )
    return tuple(out)


def node_key(snapshot: Snapshot, node: str) -> NodeKey:
    return NodeKey(node, node_pods(snapshot, node), _destinations(snapshot))


def _pod_id(pod: LocalPod) -> str:
    return f"{pod.name}.{pod.namespace}"


def _pod(snapshot: Snapshot, pod: LocalPod, key: NodeKey) -> AmbientPod:
    labels = dict(pod.labels)
    mtls = peer_mtls(snapshot, pod.namespace, labels)
    inbound = tuple(
        InboundPort(
            port,
            f"ambient_inbound|{port}|{_pod_id(pod)}",
            mtls.for_port(port),
            authz_policies(snapshot, pod.namespace, labels, port, tcp=True),
        )
        for port in pod.ports
    )
    outbound = tuple(
        OutboundDestination(
            cluster=f"{'ambient_waypoint' if d.waypoint else 'ambient_outbound'}"
            f"|{d.port}|{d.hostname}|{_pod_id(pod)}",
            address=d.address,
            port=d.port,
            authority=f"{d.hostname}:{d.target_port}",
            hbone=d.hbone,
            upstreams=d.upstreams,
            hostname=d.hostname,
            service_namespace=d.namespace,
        )
        for d in key.destinations
    )
    return AmbientPod(
        name=pod.name,
        namespace=pod.namespace,
        ip=pod.ip,
        netns_path=pod.netns_path,
        identity=spiffe(snapshot.trust_domain, pod.namespace, pod.service_account),
        outbound=outbound,
        inbound=inbound,
        facts=tuple(workload_facts(pod.workload, pod.namespace, labels).items()),
    )


def node_proxy_config(snapshot: Snapshot, key: NodeKey) -> NodeProxyConfig:
    """The node proxy's pods; policies come from ``snapshot``, the rest from ``key``."""
    return NodeProxyConfig(tuple(_pod(snapshot, pod, key) for pod in key.pods))
