"""Names shared by the runtime and translation for sidecarless (ambient) pods.

An ambient pod has no sidecar: the node proxy of its host carries its traffic.
The runtime registers every ambient pod as a WorkloadEntry as soon as its
network exists, with the facts the node proxy needs in annotations (host,
network namespace, the pod's own labels and ports). Until the pod is ready the
entry carries no labels, so no Service selects it; once ready its labels are
added and it becomes an endpoint like any pod. The node proxy opens the pod's
listeners from the first registration, so they are in place before the app
starts.
"""

from __future__ import annotations

__all__ = [
    "DATAPLANE_AMBIENT",
    "DATAPLANE_MODE_LABEL",
    "DATAPLANE_NONE",
    "DATAPLANE_SIDECAR",
    "HBONE_PORT",
    "INJECT_LABEL",
    "NAMESPACE_INJECTION_LABEL",
    "NETNS_ANNOTATION",
    "NODE_ANNOTATION",
    "NODE_PROXY_NAME",
    "NODE_PROXY_NAMESPACE",
    "NODE_PROXY_SERVICE_ACCOUNT",
    "POD_LABELS_ANNOTATION",
    "POD_PORTS_ANNOTATION",
    "REVISION_LABEL",
    "WAYPOINT_CLASS",
    "WAYPOINT_CONTROLLER",
]

# Istio's label, on a Namespace or a pod template: "ambient", or "none" to opt out.
DATAPLANE_MODE_LABEL = "istio.io/dataplane-mode"
DATAPLANE_AMBIENT = "ambient"
DATAPLANE_NONE = "none"
DATAPLANE_SIDECAR = "sidecar"

# Istio's sidecar-injection labels: on a pod (or, deprecated, its annotation),
# "true"/"false"; on a Namespace "enabled"/"disabled", or a revision label.
INJECT_LABEL = "sidecar.istio.io/inject"
NAMESPACE_INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"

# Waypoints: the built-in GatewayClass, and the controller a GatewayClass names
# to make its Gateways waypoints (Istio's names).
WAYPOINT_CLASS = "istio-waypoint"
WAYPOINT_CONTROLLER = "istio.io/mesh-controller"

# HTTP/2 CONNECT over mTLS between node proxies (Istio's HBONE port).
HBONE_PORT = 15008

NODE_ANNOTATION = "pilotfish.io/node"
NETNS_ANNOTATION = "pilotfish.io/netns"
POD_LABELS_ANNOTATION = "pilotfish.io/pod-labels"
POD_PORTS_ANNOTATION = "pilotfish.io/pod-ports"

# The node proxy's own identity: only it may ask for a node proxy's configuration.
NODE_PROXY_NAME = "node-proxy"
NODE_PROXY_NAMESPACE = "istio-system"
NODE_PROXY_SERVICE_ACCOUNT = "node-proxy"
