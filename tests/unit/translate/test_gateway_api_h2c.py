"""A Service port with ``appProtocol: kubernetes.io/h2c`` is reached over HTTP/2 with
prior knowledge (upstream's HTTPRouteBackendProtocolH2C), its HTTP/1.1 sibling port
over HTTP/1.1, from a Gateway API Gateway's proxy."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2

from pilotfish.api.loader import load_text
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import build_snapshot
from pilotfish.translate.compose import compose
from pilotfish.xds.build import build_all
from pilotfish.xds.build.clusters import HTTP_PROTOCOL_OPTIONS
from pilotfish.xds.types import CLUSTER_TYPE

CONFIG = """
apiVersion: v1
kind: Service
metadata: {name: infra-backend-v1, namespace: infra}
spec:
  selector: {app: infra-backend-v1}
  ports:
  - {name: first-port, protocol: TCP, port: 8080, targetPort: 3000}
  - {name: second-port, protocol: TCP, appProtocol: kubernetes.io/h2c, port: 8081, targetPort: 3001}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: same-namespace, namespace: infra}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-protocol-h2c, namespace: infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /h1}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - backendRefs: [{name: infra-backend-v1, port: 8081}]
"""
GATEWAY = ProxyView(
    "gateway",
    "infra",
    labels=(("gateway.networking.k8s.io/gateway-name", "same-namespace"),),
    bind_ip="127.0.0.1",
)
HOST = "infra-backend-v1.infra.svc.cluster.local"


def _clusters() -> dict[str, cluster_pb2.Cluster]:
    loaded = load_text(CONFIG, "h2c.yaml")
    assert loaded.ok, [d.format() for d in loaded.diagnostics]
    built = build_all(compose(build_snapshot(loaded.resources, 1), GATEWAY))
    out = {}
    for message in built[CLUSTER_TYPE]:
        assert isinstance(message, cluster_pb2.Cluster)
        out[message.name] = message
    return out


def _protocol_options(cluster: cluster_pb2.Cluster) -> hpo_pb2.HttpProtocolOptions | None:
    if HTTP_PROTOCOL_OPTIONS not in cluster.typed_extension_protocol_options:
        return None
    options = hpo_pb2.HttpProtocolOptions()
    assert cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(options)
    return options


def test_h2c_port_cluster_speaks_http2_with_prior_knowledge() -> None:
    clusters = _clusters()
    h2c = _protocol_options(clusters[f"outbound|8081||{HOST}"])
    assert h2c is not None
    # Explicit HTTP/2 (not ALPN auto-config, which would need TLS): prior knowledge.
    assert h2c.WhichOneof("upstream_protocol_options") == "explicit_http_config"
    assert h2c.explicit_http_config.HasField("http2_protocol_options")
    assert not clusters[f"outbound|8081||{HOST}"].HasField("transport_socket")


def test_plain_port_cluster_stays_http1() -> None:
    options = _protocol_options(_clusters()[f"outbound|8080||{HOST}"])
    assert options is None or not options.explicit_http_config.HasField("http2_protocol_options")
