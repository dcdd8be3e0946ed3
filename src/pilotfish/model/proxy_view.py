"""What the control plane knows about a proxy that can change its configuration.

Theory of operation: translation is a pure function of (snapshot, ProxyView).
Two proxies with equal views get byte-identical configuration, so the view is
also the cache key: anything that changes a proxy's output must be a field
here, and nothing else about a proxy may be read by translation. Fields that
only some resource types depend on are exposed through the narrower
``*_key`` projections so that, for example, every sidecar in a namespace
shares one outbound translation whatever its labels.

The agent writes these facts into Envoy's bootstrap ``node.metadata`` using
the key names below (Istio's names where Istio has one); the control plane
reads them back with ``ProxyView.from_node``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "META_APP_ADDRESS",
    "META_APP_PORTS",
    "META_INBOUND_PORT",
    "META_INSTANCE_IPS",
    "META_INTERCEPTION_MODE",
    "META_LABELS",
    "META_LOCALITY",
    "META_NAMESPACE",
    "META_NODE_NAME",
    "META_OUTBOUND_PORT",
    "META_ROLE",
    "META_SERVICE_ACCOUNT",
    "META_WORKLOAD_CERTS",
    "ClusterKey",
    "EndpointKey",
    "Interception",
    "NodeMetadataError",
    "OutboundKey",
    "ProxyView",
    "Role",
    "SecretKey",
]

Role = Literal["sidecar", "gateway", "node-proxy", "waypoint"]
Interception = Literal["REDIRECT", "NONE"]

META_ROLE = "ROLE"
META_NAMESPACE = "NAMESPACE"
META_LABELS = "LABELS"
META_SERVICE_ACCOUNT = "SERVICE_ACCOUNT"
META_INSTANCE_IPS = "INSTANCE_IPS"
META_INTERCEPTION_MODE = "INTERCEPTION_MODE"
META_APP_ADDRESS = "APP_ADDRESS"
META_APP_PORTS = "APP_PORTS"
META_OUTBOUND_PORT = "OUTBOUND_PORT"
META_INBOUND_PORT = "INBOUND_PORT"
# "true" when the proxy's agent serves a workload certificate over SDS (mesh mTLS
# can be used); absent for proxies run without the mesh CA.
META_WORKLOAD_CERTS = "WORKLOAD_CERTS"
# Where the proxy runs, "region/zone/subzone" (locality load balancing).
META_LOCALITY = "LOCALITY"
# The host a node proxy serves (its ambient pods are registered with this name).
META_NODE_NAME = "NODE_NAME"
# The WorkloadGroup a proxy joins the mesh for (Istio's name): the control plane
# registers it as a WorkloadEntry of that group while it is connected.
META_AUTO_REGISTER_GROUP = "AUTO_REGISTER_GROUP"


class NodeMetadataError(ValueError):
    """The node's metadata is missing or malformed."""


# -- cache keys ------------------------------------------------------------------------
# One frozen key per cached part. Each holds every input (besides the snapshot)
# that changes its part's output, and the part functions of
# ``pilotfish.translate.compose`` take exactly the key: an input a part needs
# but its key lacks cannot be read, so it cannot silently split a cache.
# Inbound listeners/clusters and gateway listeners/routes depend on the whole
# view, so their key is the ``ProxyView`` itself.


@dataclass(frozen=True, slots=True)
class OutboundKey:
    """A sidecar's outbound listeners and routes: its namespace and listener
    layout, the values of the labels some ``sourceLabels`` selector names
    (empty when none does), the applied Sidecar (``namespace/name``, ``""``) and
    the Telemetry selecting the workload (``namespace/name``, ``""``)."""

    namespace: str
    interception: Interception
    bind_ip: str
    outbound_port: int
    workload_certs: bool
    source_labels: tuple[tuple[str, str], ...] = ()
    sidecar: str = ""
    telemetry: str = ""
    # Who the metrics of these listeners report as: a sidecar its workload
    # ("source"), a waypoint itself ("waypoint").
    reporter: Literal["source", "waypoint"] = "source"


@dataclass(frozen=True, slots=True)
class ClusterKey:
    """Outbound clusters: DestinationRule precedence (namespace), whether mesh
    mTLS can be used (workload certificate), the applied Sidecar's egress, and
    (gateways of a Gateway API Gateway with ``spec.tls.backend``) the credential
    presented to BackendTLSPolicy backends."""

    namespace: str
    workload_certs: bool
    sidecar: str = ""
    backend_client_cert: str = ""


@dataclass(frozen=True, slots=True)
class EndpointKey:
    """Locality-aware load assignments: which DestinationRule applies
    (namespace) and where the proxy runs."""

    namespace: str
    locality: str


@dataclass(frozen=True, slots=True)
class SecretKey:
    """Credential secrets: the SDS names the proxy's listeners and clusters use
    (derived from its other parts, not from the view)."""

    names: frozenset[str]


@dataclass(frozen=True, slots=True)
class ProxyView:
    """The facts about one proxy that its configuration depends on.

    - ``interception``: ``REDIRECT`` when iptables hands traffic to the proxy
      (listeners on 15001/15006 with original destination), ``NONE`` when apps
      dial the proxy explicitly (listeners bound on ``bind_ip``).
    - ``bind_ip``: address listeners bind to (``0.0.0.0`` under REDIRECT).
    - ``workload_certs``: the agent serves this proxy a mesh certificate over
      SDS, so mesh mTLS may be used on both sides.
    - ``locality``: ``region/zone/subzone`` of the proxy (``""``: unknown); only
      endpoints of clusters with locality load balancing depend on it.
    - ``app_address``/``app_ports``: where the local app listens; ``app_ports``
      maps a service target port to the port the app really uses, when they
      differ (explicit mode hands apps their own port). For a gateway it maps
      a Gateway server port to the port the listener really binds (a gateway
      published on another host port).
    """

    role: Role
    namespace: str
    labels: tuple[tuple[str, str], ...] = ()
    service_account: str = "default"
    interception: Interception = "NONE"
    bind_ip: str = "127.0.0.1"
    app_address: str = "127.0.0.1"
    app_ports: tuple[tuple[int, int], ...] = ()
    outbound_port: int = 15001
    inbound_port: int = 15006
    workload_certs: bool = False
    locality: str = ""
    node: str = ""  # node proxies: the host whose ambient pods it serves

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def app_port(self, target_port: int) -> int:
        for target, app in self.app_ports:
            if target == target_port:
                return app
        return target_port

    def outbound_key(
        self, source_label_keys: frozenset[str], sidecar: str, telemetry: str = ""
    ) -> OutboundKey:
        """The key of this (sidecar) view's outbound listeners and routes, given the
        label keys ``sourceLabels`` selectors name, the applied Sidecar and the
        Telemetry selecting the workload."""
        return OutboundKey(
            self.namespace,
            self.interception,
            self.bind_ip,
            self.outbound_port,
            self.workload_certs,
            tuple((k, v) for k, v in self.labels if k in source_label_keys),
            sidecar,
            telemetry,
            "waypoint" if self.role == "waypoint" else "source",
        )

    def cluster_key(self, sidecar: str) -> ClusterKey:
        """The key of this view's outbound clusters under the applied Sidecar."""
        return ClusterKey(self.namespace, self.workload_certs, sidecar)

    @property
    def endpoint_key(self) -> EndpointKey:
        """What locality-aware endpoints depend on."""
        return EndpointKey(self.namespace, self.locality)

    @classmethod
    def from_node(cls, metadata: Mapping[str, Any]) -> ProxyView:
        """Build a view from Envoy node metadata (already converted to plain Python)."""
        role = str(metadata.get(META_ROLE, "sidecar"))
        if role not in ("sidecar", "gateway", "node-proxy", "waypoint"):
            raise NodeMetadataError(
                f"{META_ROLE} must be 'sidecar', 'gateway', 'node-proxy' or 'waypoint', "
                f"got {role!r}"
            )
        node = str(metadata.get(META_NODE_NAME, "") or "")
        if role == "node-proxy" and not node:
            raise NodeMetadataError(f"a node proxy's metadata needs {META_NODE_NAME}")
        namespace = str(metadata.get(META_NAMESPACE, "") or "")
        if not namespace:
            raise NodeMetadataError(f"node metadata has no {META_NAMESPACE}")
        labels_raw = metadata.get(META_LABELS) or {}
        if not isinstance(labels_raw, Mapping):
            raise NodeMetadataError(f"{META_LABELS} must be a map of strings")
        labels = tuple(sorted((str(k), str(v)) for k, v in labels_raw.items()))
        interception = str(metadata.get(META_INTERCEPTION_MODE, "NONE")).upper()
        if interception not in ("REDIRECT", "NONE"):
            raise NodeMetadataError(
                f"{META_INTERCEPTION_MODE} must be REDIRECT or NONE, got {interception!r}"
            )
        ips = str(metadata.get(META_INSTANCE_IPS, "") or "127.0.0.1")
        first_ip = ips.split(",")[0].strip() or "127.0.0.1"
        bind_ip = "0.0.0.0" if interception == "REDIRECT" else first_ip
        if role == "waypoint":
            # Its HTTP proxy listener is reached only through its own HBONE
            # listener, over loopback in its own network namespace.
            bind_ip = "127.0.0.1"
        app_ports_raw = metadata.get(META_APP_PORTS) or {}
        if not isinstance(app_ports_raw, Mapping):
            raise NodeMetadataError(f"{META_APP_PORTS} must be a map of port to port")
        try:
            app_ports = tuple(sorted((int(k), int(v)) for k, v in app_ports_raw.items()))
            outbound_port = int(metadata.get(META_OUTBOUND_PORT, 15001))
            inbound_port = int(metadata.get(META_INBOUND_PORT, 15006))
        except (TypeError, ValueError) as exc:
            raise NodeMetadataError(f"bad port in node metadata: {exc}") from exc
        return cls(
            role=role,  # type: ignore[arg-type]
            namespace=namespace,
            labels=labels,
            service_account=str(metadata.get(META_SERVICE_ACCOUNT, "default") or "default"),
            interception=interception,  # type: ignore[arg-type]
            bind_ip=bind_ip,
            app_address=str(metadata.get(META_APP_ADDRESS, "127.0.0.1") or "127.0.0.1"),
            app_ports=app_ports,
            outbound_port=outbound_port,
            inbound_port=inbound_port,
            workload_certs=str(metadata.get(META_WORKLOAD_CERTS, "")).lower() == "true",
            locality=str(metadata.get(META_LOCALITY, "") or "").strip("/"),
            node=node,
        )
