"""Mesh mTLS translation: PeerAuthentication precedence, cluster TLS by
DestinationRule mode, inbound chains, gateway TLS, and that CDS stays
independent of endpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilotfish import ir
from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.runtime.network.capture import INBOUND_PASSTHROUGH_SOURCE
from pilotfish.translate.clusters import load_assignments, outbound_clusters
from pilotfish.translate.gateway import gateway_listeners
from pilotfish.translate.security.mtls import istio_sni
from pilotfish.translate.security.peer_authn import peer_mtls
from pilotfish.translate.sidecar import sidecar_inbound
from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: tcp, port: 7000}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1, namespace: default}
spec:
  address: ADDRESS
  labels: {app: reviews, security.istio.io/tlsMode: istio}
"""


def resources(text: str) -> tuple[Resource, ...]:
    result = load_text(text, "test.yaml")
    errors = [d for d in result.diagnostics if d.is_error]
    assert not errors, errors
    return tuple(result.resources)


def snapshot(text: str) -> Snapshot:
    return build_snapshot(resources(text), 1)


def peer_auth(name: str, namespace: str, body: str) -> str:
    return f"""
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {namespace}}}
spec: {body}
"""


REVIEWS = {"app": "reviews"}
CASE = Path(__file__).parents[2] / "testdata" / "translate" / "in" / "security-mtls.yaml"


def _pems() -> dict[str, str]:
    """A real certificate, key and CA (Secrets are validated), from a golden input."""
    (secret,) = [r for r in resources(CASE.read_text()) if r.name == "ledger-client"]
    return {k: v.decode() for k, v in secret.spec.decoded().items()}  # type: ignore[attr-defined]


def secret(name: str, namespace: str) -> str:
    data = json.dumps(_pems())
    return f"""
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: {namespace}}}
type: kubernetes.io/tls
stringData: {data}
"""


# -- PeerAuthentication precedence --------------------------------------------------


def test_default_mode_is_permissive() -> None:
    assert peer_mtls(snapshot(SERVICE), "default", REVIEWS).mode == "PERMISSIVE"


def test_mesh_policy_applies_to_every_namespace() -> None:
    snap = snapshot(SERVICE + peer_auth("mesh", "istio-system", "{mtls: {mode: STRICT}}"))
    assert peer_mtls(snap, "default", REVIEWS).mode == "STRICT"
    assert peer_mtls(snap, "other", {}).mode == "STRICT"


def test_namespace_policy_overrides_mesh_and_unset_inherits() -> None:
    text = (
        SERVICE
        + peer_auth("mesh", "istio-system", "{mtls: {mode: STRICT}}")
        + peer_auth("ns", "default", "{mtls: {mode: DISABLE}}")
        + peer_auth("unset", "other", "{mtls: {mode: UNSET}}")
    )
    snap = snapshot(text)
    assert peer_mtls(snap, "default", REVIEWS).mode == "DISABLE"
    assert peer_mtls(snap, "other", REVIEWS).mode == "STRICT"


def test_workload_policy_wins_only_for_matching_labels() -> None:
    text = (
        SERVICE
        + peer_auth("ns", "default", "{mtls: {mode: PERMISSIVE}}")
        + peer_auth(
            "wl", "default", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}"
        )
    )
    snap = snapshot(text)
    assert peer_mtls(snap, "default", REVIEWS).mode == "STRICT"
    assert peer_mtls(snap, "default", {"app": "ratings"}).mode == "PERMISSIVE"


def test_root_namespace_selector_policy_is_not_mesh_wide() -> None:
    body = "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}"
    snap = snapshot(SERVICE + peer_auth("wl", "istio-system", body))
    assert peer_mtls(snap, "default", REVIEWS).mode == "PERMISSIVE"


def test_port_level_overrides_and_unset_port_inherits_workload() -> None:
    body = (
        "{selector: {matchLabels: {app: reviews}}, mtls: {mode: UNSET},"
        " portLevelMtls: {9080: {mode: STRICT}, 7000: {mode: UNSET}}}"
    )
    snap = snapshot(
        SERVICE
        + peer_auth("ns", "default", "{mtls: {mode: DISABLE}}")
        + peer_auth("wl", "default", body)
    )
    modes = peer_mtls(snap, "default", REVIEWS)
    assert modes.mode == "DISABLE"
    assert modes.for_port(9080) == "STRICT"
    assert modes.for_port(7000) == "DISABLE"


# -- client side ---------------------------------------------------------------------


def cluster(snap: Snapshot, name: str, *, certs: bool = True) -> ir.Cluster:
    found = {c.name: c for c in outbound_clusters(snap, "default", workload_certs=certs)}
    return found[name]


REVIEWS_9080 = "outbound|9080||reviews.default.svc.cluster.local"


def test_auto_mtls_only_with_workload_certs() -> None:
    snap = snapshot(SERVICE.replace("ADDRESS", "10.0.0.1"))
    auto = cluster(snap, REVIEWS_9080).auto_mtls
    assert auto is not None and auto.mode == "ISTIO_MUTUAL"
    assert auto.sni == istio_sni("reviews.default.svc.cluster.local", 9080)
    assert auto.sni == "outbound_.9080_._.reviews.default.svc.cluster.local"
    assert auto.client_cert == ir.CertSource(sds="default")
    assert auto.trusted_ca == ir.CertSource(sds="ROOTCA")
    assert auto.subject_alt_names == ()
    assert cluster(snap, REVIEWS_9080, certs=False).auto_mtls is None


def test_endpoints_carry_tls_mode_from_the_label() -> None:
    snap = snapshot(SERVICE.replace("ADDRESS", "10.0.0.1"))
    cla = {c.cluster_name: c for c in load_assignments(snap)}[REVIEWS_9080]
    assert [e.tls_mode for e in cla.endpoints] == ["istio"]


def dr(tls: str) -> str:
    return f"""
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  trafficPolicy:
    tls: {tls}
  subsets:
  - name: plain
    labels: {{version: v1}}
    trafficPolicy:
      tls: {{mode: DISABLE}}
"""


def test_destination_rule_disable_turns_auto_mtls_off() -> None:
    snap = snapshot(SERVICE.replace("ADDRESS", "10.0.0.1") + dr("{mode: DISABLE}"))
    c = cluster(snap, REVIEWS_9080)
    assert c.tls is None and c.auto_mtls is None


def test_destination_rule_istio_mutual_is_tls_to_every_endpoint() -> None:
    tls = "{mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://cluster.local/ns/default/sa/r]}"
    snap = snapshot(SERVICE.replace("ADDRESS", "10.0.0.1") + dr(tls))
    c = cluster(snap, REVIEWS_9080)
    assert c.auto_mtls is None and c.tls is not None
    assert c.tls.subject_alt_names == ("spiffe://cluster.local/ns/default/sa/r",)
    subset = cluster(snap, "outbound|9080|plain|reviews.default.svc.cluster.local")
    assert subset.tls is None and subset.auto_mtls is None
    # Without a certificate the proxy cannot do mesh mTLS at all.
    assert cluster(snap, REVIEWS_9080, certs=False).tls is None


def test_destination_rule_simple_and_mutual_with_files() -> None:
    simple = "{mode: SIMPLE, caCertificates: /etc/ca.pem, sni: r.example, subjectAltNames: [r]}"
    snap = snapshot(SERVICE.replace("ADDRESS", "10.0.0.1") + dr(simple))
    http = cluster(snap, REVIEWS_9080, certs=False)
    # An HTTP port says its protocol: ALPN does not choose it.
    assert not http.negotiate_http
    tls = http.tls
    assert tls == ir.UpstreamTls(
        "SIMPLE",
        trusted_ca=ir.CertSource(cert_file="/etc/ca.pem"),
        subject_alt_names=("r",),
        sni="r.example",
    )
    mutual = (
        "{mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, insecureSkipVerify: true}"
    )
    snap = snapshot(SERVICE.replace("ADDRESS", "10.0.0.1") + dr(mutual))
    tls = cluster(snap, REVIEWS_9080).tls
    assert tls is not None and tls.mode == "MUTUAL"
    assert tls.client_cert == ir.CertSource(cert_file="/c.pem", key_file="/k.pem")
    assert tls.trusted_ca is None and tls.insecure_skip_verify


def test_destination_rule_credential_name_refers_to_the_secret_over_sds() -> None:
    snap = snapshot(
        SERVICE.replace("ADDRESS", "10.0.0.1")
        + dr("{mode: MUTUAL, credentialName: creds}")
        + secret("creds", "default")
    )
    tls = cluster(snap, REVIEWS_9080).tls
    assert tls is not None
    assert tls.client_cert == ir.CertSource(credential="kubernetes://default/creds")
    assert tls.trusted_ca == ir.CertSource(credential="kubernetes://default/creds-cacert")
    missing = snapshot(
        SERVICE.replace("ADDRESS", "10.0.0.1") + dr("{mode: SIMPLE, credentialName: nope}")
    )
    tls = cluster(missing, REVIEWS_9080).tls
    # Fails closed: an SDS secret nobody serves, never a silent plaintext downgrade.
    assert tls is not None
    assert tls.trusted_ca == ir.CertSource(credential="kubernetes://default/nope-cacert")


def test_endpoint_only_change_keeps_cds_identical() -> None:
    gen = MeshGenerator()
    first = build_snapshot(resources(SERVICE.replace("ADDRESS", "10.0.0.1")), 1)
    gen.set_snapshot(first)
    view = ProxyView("sidecar", "default", workload_certs=True)
    before = gen.generate(view)
    second = build_snapshot(resources(SERVICE.replace("ADDRESS", "10.0.0.2")), 2, first)
    gen.set_snapshot(second)
    after = gen.generate(view)
    assert after[CLUSTER_TYPE] is before[CLUSTER_TYPE]
    assert after[ENDPOINT_TYPE].version != before[ENDPOINT_TYPE].version


def test_views_with_and_without_certs_get_different_clusters() -> None:
    gen = MeshGenerator()
    gen.set_snapshot(build_snapshot(resources(SERVICE.replace("ADDRESS", "10.0.0.1")), 1))
    plain = gen.generate(ProxyView("sidecar", "default"))
    mtls = gen.generate(ProxyView("sidecar", "default", workload_certs=True))
    assert plain[CLUSTER_TYPE].version != mtls[CLUSTER_TYPE].version


# -- server side ---------------------------------------------------------------------


def inbound(text: str, **view: object) -> ir.Listener:
    snap = snapshot(SERVICE.replace("ADDRESS", "10.0.0.1") + text)
    proxy = ProxyView("sidecar", "default", labels=(("app", "reviews"),), **view)  # type: ignore[arg-type]
    (listener,) = [x for x in sidecar_inbound(snap, proxy).listeners if x.port in (15006, 9080)]
    return listener


def test_strict_redirect_layout_rejects_plaintext() -> None:
    lst = inbound(
        peer_auth("ns", "default", "{mtls: {mode: STRICT}}"),
        interception="REDIRECT",
        bind_ip="0.0.0.0",
        workload_certs=True,
    )
    chains = {c.name: c for c in lst.filter_chains}
    secure = chains["inbound|9080||-mtls"]
    assert secure.match == ir.FilterChainMatch(destination_port=9080, transport_protocol="tls")
    assert secure.tls is not None and secure.tls.require_client_cert
    assert isinstance(secure.filter, ir.HttpConnectionManager) and secure.filter.forward_client_cert
    rejected = chains["inbound|9080||-plaintext-rejected"]
    assert rejected.filter == ir.TcpProxy("BlackHoleCluster", "BlackHoleCluster")
    assert lst.default_chain is not None and "rejected" in lst.default_chain.name
    assert lst.inspect_tls


def test_permissive_redirect_passes_other_tls_to_the_app_from_the_uncaptured_source() -> None:
    """TLS without the mesh ALPN (a gateway's BackendTLSPolicy connection) goes to
    the app through InboundPassthroughCluster, which dials the pod's own address:
    only from the source the capture rules exempt does that not loop into Envoy."""
    snap = snapshot(SERVICE.replace("ADDRESS", "10.0.0.1"))
    proxy = ProxyView(
        "sidecar",
        "default",
        labels=(("app", "reviews"),),
        interception="REDIRECT",
        bind_ip="0.0.0.0",
        workload_certs=True,
    )
    parts = sidecar_inbound(snap, proxy)
    (lst,) = [x for x in parts.listeners if x.port == 15006]
    assert lst.default_chain is not None
    assert lst.default_chain.filter == ir.TcpProxy(
        "InboundPassthroughCluster", "InboundPassthroughCluster"
    )
    (passthrough,) = [c for c in parts.clusters if c.name == "InboundPassthroughCluster"]
    assert passthrough.source_address == "127.0.0.6"
    assert f"{passthrough.source_address}/32" == INBOUND_PASSTHROUGH_SOURCE


def test_permissive_explicit_layout_has_both_chains() -> None:
    lst = inbound("", workload_certs=True)
    kinds = {c.match.transport_protocol: c for c in lst.filter_chains if c.match}
    assert set(kinds) == {"tls", "raw_buffer"}
    plain = kinds["raw_buffer"].filter
    assert isinstance(plain, ir.HttpConnectionManager) and not plain.forward_client_cert
    assert lst.default_chain is None and lst.inspect_tls


@pytest.mark.parametrize("certs", [False, True])
def test_disable_or_no_certs_keeps_plaintext(certs: bool) -> None:
    lst = inbound(peer_auth("ns", "default", "{mtls: {mode: DISABLE}}"), workload_certs=certs)
    assert lst.filter_chains == () and lst.default_chain is not None
    assert lst.default_chain.tls is None and not lst.inspect_tls


# -- gateway -------------------------------------------------------------------------

GATEWAY = """
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingress}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, credentialName: CREDENTIAL}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [a.example.com]
    tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a.example.com]
  gateways: [gw]
  http: [{route: [{destination: {host: reviews}}]}]
"""


def gateway(credential: str) -> tuple[tuple[ir.Listener, ...], tuple[ir.RouteConfig, ...]]:
    snap = snapshot(
        SERVICE.replace("ADDRESS", "10.0.0.1")
        + GATEWAY.replace("CREDENTIAL", credential)
        + secret("cert", "edge")
    )
    parts = gateway_listeners(snap, ProxyView("gateway", "edge", labels=(("istio", "ingress"),)))
    return parts.listeners, parts.route_configs


def test_gateway_simple_uses_the_secret_of_the_gateway_workload_namespace() -> None:
    listeners, routes = gateway("cert")
    https = {x.port: x for x in listeners}[443]
    (chain,) = https.filter_chains
    assert chain.tls is not None
    # The listener names the SDS resource; the key itself never enters it.
    assert chain.tls.server_cert == ir.CertSource(credential="kubernetes://edge/cert")
    assert chain.name == "https.443.https.gw.default"
    by_name = {r.name: r for r in routes}
    assert [vh.require_tls for vh in by_name["http.80"].virtual_hosts] == [True]
    assert [vh.require_tls for vh in by_name[chain.name].virtual_hosts] == [False]


def test_gateway_server_with_missing_secret_is_skipped() -> None:
    listeners, _ = gateway("absent")
    assert [x.port for x in listeners] == [80]


def _strict_and_plaintext(mode: str) -> tuple[bool | None, bool]:
    """For ``mode`` on port 9080: whether its routes require mTLS, and whether a
    plaintext chain serves HTTP there."""
    snap = snapshot(SERVICE + peer_auth("wl", "default", f"{{mtls: {{mode: {mode}}}}}"))
    view = ProxyView(
        "sidecar",
        "default",
        labels=tuple(REVIEWS.items()),
        interception="REDIRECT",
        workload_certs=True,
    )
    parts = sidecar_inbound(snap, view)
    (config,) = [rc for rc in parts.route_configs if rc.name == "inbound|9080||"]
    (vhost,) = config.virtual_hosts
    (listener,) = parts.listeners
    plaintext_http = any(
        isinstance(c.filter, ir.HttpConnectionManager) and c.tls is None
        for c in listener.filter_chains
    )
    return (vhost.policy.require_mtls if vhost.policy else None), plaintext_http


def test_strict_also_denies_plaintext_requests_in_the_routes() -> None:
    """A plaintext connection opened under PERMISSIVE stays on its old chain
    until the drain ends; STRICT's DENY in the routes (RDS) reaches it at once."""
    assert _strict_and_plaintext("PERMISSIVE") == (None, True)
    assert _strict_and_plaintext("STRICT") == (True, False)
