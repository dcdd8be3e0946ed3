"""HTTPS listeners of one port detect misdirected requests: a request whose host the
SNI-selected listener does not serve answers 421 (upstream's
HTTPRouteHTTPSListenerDetectMisdirectedRequests, on its Gateway and routes).

Each request is followed through the gateway's IR the way Envoy picks: the filter
chain by SNI, the virtual host of that chain's route configuration by
``:authority``, the first matching route."""

from __future__ import annotations

import pytest

from pilotfish import ir
from pilotfish.api.loader import load_text
from pilotfish.explain.listeners import Connection, select_chain
from pilotfish.explain.request import ExplainRequest
from pilotfish.explain.routing import match_route, select_virtual_host
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import build_snapshot
from pilotfish.translate.compose import compose
from pki import TestCa, tls_secret

NS = "infra"
_LISTENERS = (
    ("https", ""),
    ("https-with-hostname", "second-example.org"),
    ("https-with-wildcard-hostname", "*.wildcard.org"),
    ("https-with-hostname-matching-wildcard", "fourth-example.wildcard.org"),
)
_ROUTES = (
    ("https", "v1", "hostnames: [example.org]"),
    ("https-with-hostname", "v2", ""),
    ("https-with-wildcard-hostname", "v3", ""),
    ("https-with-hostname-matching-wildcard", "v1", ""),
)


def _config(listeners: tuple[tuple[str, str], ...] = _LISTENERS) -> str:
    ca = TestCa()
    docs = [tls_secret("cert", NS, ca.issue("gateway", dns=("*", "*.wildcard.org")))]
    for version in ("v1", "v2", "v3"):
        docs.append(
            "apiVersion: v1\nkind: Service\n"
            f"metadata: {{name: backend-{version}, namespace: {NS}}}\n"
            f"spec:\n  selector: {{app: {version}}}\n  ports: [{{name: http, port: 8080}}]\n"
        )
    tls = "tls: {certificateRefs: [{kind: Secret, name: cert}]}"
    listener_docs = "".join(
        f"  - {{name: {name}, port: 443, protocol: HTTPS, {tls}"
        + (f", hostname: '{host}'" if host else "")
        + "}\n"
        for name, host in listeners
    )
    docs.append(
        f"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
        f"metadata: {{name: gw, namespace: {NS}}}\n"
        f"spec:\n  gatewayClassName: istio\n  listeners:\n{listener_docs}"
    )
    names = {name for name, _ in listeners}
    for i, (section, version, hostnames) in enumerate(_ROUTES):
        if section not in names:
            continue
        docs.append(
            f"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
            f"metadata: {{name: route-{i}, namespace: {NS}}}\n"
            f"spec:\n  parentRefs: [{{name: gw, sectionName: {section}}}]\n"
            + (f"  {hostnames}\n" if hostnames else "")
            + f"  rules: [{{backendRefs: [{{name: backend-{version}, port: 8080}}]}}]\n"
        )
    return "---\n".join(docs)


GATEWAY = ProxyView(
    "gateway",
    NS,
    labels=(("gateway.networking.k8s.io/gateway-name", "gw"),),
    bind_ip="127.0.0.1",
)


def _outcome(config: ir.ProxyConfig, sni: str, host: str) -> str:
    """What the gateway does with an HTTPS request: ``421``/``404`` (answered by
    Envoy) or the backend Service it goes to."""
    (listener,) = [x for x in config.listeners if x.port == 443]
    chain, _ = select_chain(listener, Connection("127.0.0.1", 443, "tls", sni, ("h2",)))
    assert chain is not None and isinstance(chain.filter, ir.HttpConnectionManager)
    (routes,) = [r for r in config.route_configs if r.name == chain.filter.route_config_name]
    vhost, _, _ = select_virtual_host(routes, host)
    if vhost is None:
        return "404"
    route, _ = match_route(vhost.routes, ExplainRequest(f"https://{host}/x"))
    if route is None:
        return "404"
    if isinstance(route.action, ir.DirectResponseAction):
        return str(route.action.status)
    assert isinstance(route.action, ir.ForwardAction)
    (target,) = route.action.clusters
    return target.cluster.split("|")[3].split(".")[0]


def _gateway_config(listeners: tuple[tuple[str, str], ...] = _LISTENERS) -> ir.ProxyConfig:
    loaded = load_text(_config(listeners), "misdirected.yaml")
    assert loaded.ok, [d.format() for d in loaded.diagnostics]
    return compose(build_snapshot(loaded.resources, 1), GATEWAY)


@pytest.mark.parametrize(
    ("sni", "host", "want"),
    [
        ("example.org", "example.org", "backend-v1"),
        ("example.org", "second-example.org", "421"),
        ("example.org", "unknown-example.org", "404"),
        ("second-example.org", "second-example.org", "backend-v2"),
        ("second-example.org", "example.org", "421"),
        ("second-example.org", "unknown-example.org", "421"),
        ("third-example.wildcard.org", "third-example.wildcard.org", "backend-v3"),
        ("third-example.wildcard.org", "fith-example.wildcard.org", "backend-v3"),
        ("third-example.wildcard.org", "fourth-example.wildcard.org", "421"),
        ("third-example.wildcard.org", "second-example.org", "421"),
        ("third-example.wildcard.org", "unknown-example.org", "421"),
        ("fourth-example.wildcard.org", "fourth-example.wildcard.org", "backend-v1"),
        ("fourth-example.wildcard.org", "fith-example.wildcard.org", "421"),
        ("unknown-example.org", "example.org", "backend-v1"),
        ("unknown-example.org", "unknown-example.org", "404"),
        # A host with a port is the same host (the domains carry ``:*``).
        ("example.org", "second-example.org:443", "421"),
        ("second-example.org", "second-example.org:443", "backend-v2"),
    ],
)
def test_sni_and_authority(sni: str, host: str, want: str) -> None:
    assert _outcome(_gateway_config(), sni, host) == want


def test_one_listener_serves_any_sni_without_421() -> None:
    """A port with one HTTPS listener has no SNI to choose by: every name reaches it,
    and a host it does not serve is simply not found."""
    config = _gateway_config((("https-with-hostname", "second-example.org"),))
    assert _outcome(config, "second-example.org", "second-example.org") == "backend-v2"
    assert _outcome(config, "second-example.org", "example.org") == "404"
    assert not any(
        vh.name.startswith("misdirected:") for rc in config.route_configs for vh in rc.virtual_hosts
    )
