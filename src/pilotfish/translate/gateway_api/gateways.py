"""Gateway API Gateways -> Istio Gateways, one per listener, and listener status.

Theory of operation: a Gateway whose class names a controller Pilotfish
serves (``index.SERVED_CONTROLLERS``; class ``istio`` is built in) becomes one
Istio Gateway per usable listener, selecting the workloads labelled
``gateway.networking.k8s.io/gateway-name: <gateway>`` in the Gateway's
namespace. One Istio Gateway per listener (as Istio does) lets a route bound
to one listener (``sectionName``/``port``) reach only that listener's port
and hostname (a ``TLS`` listener in ``Terminate`` mode becomes a ``TLS``
server in ``SIMPLE`` mode: the gateway decrypts, its TLSRoutes or TCPRoutes
forward plain TCP). A listener is usable when its protocol is supported, its
certificates resolve, and it does not conflict with another listener on its
port (HTTP and HTTPS/TLS/TCP on one port, or two TCP listeners), and,
when ``spec.tls.frontend`` asks it to validate client certificates, at least
one of its CA refs is usable (``gateway_tls``). ``spec.tls.backend``'s client
certificate is named on every Istio Gateway derived from the Gateway.
Gateways of other controllers are left alone: no objects, no status.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Final

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.gateway_api.common import GROUP
from pilotfish.api.gateway_api.gateway import GatewaySpec, Listener, RouteGroupKind
from pilotfish.api.networking.gateway import GatewaySpec as IstioGatewaySpec
from pilotfish.api.networking.gateway import Port, Server, ServerTLSMode, ServerTLSSettings
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.api.validation.findings import Findings
from pilotfish.translate.gateway_api.derived import SCOPE_NAMESPACE, derived, safe_name
from pilotfish.translate.gateway_api.gateway_tls import (
    ACCEPT_UNTRUSTED_ANNOTATION,
    BACKEND_CLIENT_CERT_ANNOTATION,
    BackendClientCert,
    FrontendValidation,
    backend_client_cert,
    frontend_validation,
    mutual_secret,
)
from pilotfish.translate.gateway_api.index import (
    GATEWAY_NAME_LABEL,
    SERVED_CONTROLLERS,
    ConfigIndex,
)
from pilotfish.translate.gateway_api.status import Condition, conditions

__all__ = [
    "GatewayState",
    "ListenerState",
    "convert_gateways",
    "gateway_addresses",
    "gateway_status",
    "listener_findings",
]

#: Route kinds each listener protocol accepts when ``allowedRoutes.kinds`` is empty.
_DEFAULT_KINDS: Final = {
    "HTTP": ("HTTPRoute", "GRPCRoute"),
    "HTTPS": ("HTTPRoute", "GRPCRoute"),
    "TLS": ("TLSRoute",),
    "TCP": ("TCPRoute",),
}
_ISTIO_PROTOCOL: Final = {"HTTP": "HTTP", "HTTPS": "HTTPS", "TLS": "TLS", "TCP": "TCP"}


@dataclass
class ListenerState:
    """A listener as routes see it: may they attach, and through which Istio Gateway."""

    gateway: Resource
    listener: Listener
    #: ``ns/name`` of the derived Istio Gateway; "" when the listener is not usable.
    istio_gateway: str
    supported_kinds: tuple[str, ...]
    conditions: list[Condition] = field(default_factory=list)
    attached_routes: int = 0


@dataclass
class GatewayState:
    resource: Resource
    controller: str
    listeners: list[ListenerState]
    #: ``spec.tls.backend.clientCertificateRef`` resolved (None: not set).
    backend_cert: BackendClientCert | None = None
    #: Some listener accepts clients without a valid certificate (AllowInsecureFallback).
    insecure_frontend: bool = False


def gateway_addresses(index: ConfigIndex, namespace: str, name: str) -> list[dict[str, str]]:
    """``status.addresses`` of a Gateway: the addresses of the registered workloads
    labelled ``gateway.networking.k8s.io/gateway-name: <name>`` in its namespace."""
    found = sorted(set(index.workload_addresses.get((namespace, name), ())))
    return [{"type": "IPAddress", "value": a} for a in found]


def _supported_kinds(listener: Listener) -> tuple[tuple[str, ...], list[str]]:
    """(kinds routes may be of, kinds asked for that the protocol cannot carry)."""
    defaults = _DEFAULT_KINDS.get(listener.protocol, ())
    if listener.protocol == "TLS" and listener.tls is not None and listener.tls.mode == "Terminate":
        # The gateway decrypts: a TLSRoute picks the backend by SNI, a TCPRoute takes all.
        defaults = ("TLSRoute", "TCPRoute")
    if not listener.allowed_routes.kinds:
        return defaults, []
    kinds: list[str] = []
    invalid: list[str] = []
    for k in listener.allowed_routes.kinds:
        if _kind_ok(k, defaults):
            kinds.append(k.kind)
        else:
            invalid.append(k.kind)
    return tuple(kinds), invalid


def _kind_ok(k: RouteGroupKind, defaults: tuple[str, ...]) -> bool:
    return k.group == GROUP and k.kind in defaults


def _certificates(
    gw: Resource,
    listener: Listener,
    index: ConfigIndex,
    copies: list[Resource],
    sources: list[Resource] | None = None,
) -> tuple[list[str], Condition | None]:
    """credentialNames of a listener's certificateRefs, or the ResolvedRefs failure.

    A gateway proxy is only ever served its own namespace's Secrets, so a
    certificate of another namespace that a ReferenceGrant lets this Gateway
    use is copied (as a derived Secret, added to ``copies``) into the
    Gateway's namespace: the grant is what allows that use.
    """
    tls = listener.tls
    if tls is None or tls.mode == "Passthrough":
        return [], None
    names: list[str] = []
    for ref in tls.certificate_refs:
        ns = ref.namespace or gw.namespace
        if ref.group != "" or ref.kind != "Secret":
            return [], Condition(
                "ResolvedRefs",
                False,
                "InvalidCertificateRef",
                f"certificateRef {ref.kind} {ref.name}: only Secrets are supported",
            )
        if not index.reference_allowed("Gateway", gw.namespace, "", "Secret", ns, ref.name):
            return [], Condition(
                "ResolvedRefs",
                False,
                "RefNotPermitted",
                f"Secret {ns}/{ref.name}: no ReferenceGrant in {ns} allows it",
            )
        if (ns, ref.name) not in index.secrets:
            return [], Condition(
                "ResolvedRefs",
                False,
                "InvalidCertificateRef",
                f"Secret {ns}/{ref.name} does not exist",
            )
        source = index.secrets[(ns, ref.name)]
        if sources is not None:
            sources.append(source)
        if ns == gw.namespace:
            names.append(ref.name)
            continue
        copy = derived("Secret", "v1", gw.namespace, safe_name(ns, ref.name), source.spec, [gw])
        copies.append(copy)
        names.append(copy.name)
    if not names:
        return [], Condition("ResolvedRefs", False, "InvalidCertificateRef", "no certificateRefs")
    return names, None


def _conflicts(spec: GatewaySpec) -> dict[str, str]:
    """listener name -> why it conflicts with another listener on its port."""
    by_port: dict[int, list[Listener]] = {}
    for listener in spec.listeners:
        by_port.setdefault(listener.port, []).append(listener)
    out: dict[str, str] = {}
    for port, group in by_port.items():
        families = {
            "HTTP"
            if x.protocol == "HTTP"
            else "TLS"
            if x.protocol in ("HTTPS", "TLS")
            else x.protocol
            for x in group
        }
        if len(families) > 1:
            for x in group:
                out[x.name] = f"port {port} carries incompatible protocols"
            continue
        tcp = [x for x in group if x.protocol == "TCP"]
        if len(tcp) > 1:
            for x in tcp:
                out[x.name] = f"more than one TCP listener on port {port}"
    return out


def _server(
    listener: Listener, credentials: list[str], validation: FrontendValidation | None = None
) -> Server:
    host = f"*/{listener.hostname or '*'}"
    tls: ServerTLSSettings | None = None
    if listener.tls is not None:
        mode: ServerTLSMode = "SIMPLE"
        if validation is not None:
            mode = "OPTIONAL_MUTUAL" if validation.insecure_fallback else "MUTUAL"
        if listener.tls.mode == "Passthrough":
            tls = ServerTLSSettings(mode="PASSTHROUGH")
        elif len(credentials) == 1:
            tls = ServerTLSSettings(mode=mode, credential_name=credentials[0])
        else:
            tls = ServerTLSSettings(mode=mode, credential_names=credentials)
    port = Port(
        number=listener.port, protocol=_ISTIO_PROTOCOL[listener.protocol], name=listener.name
    )
    return Server(port=port, hosts=[host], tls=tls, name=listener.name)


@dataclass(frozen=True)
class _GatewayTls:
    """What a Gateway's ``spec.tls`` gives each listener's conversion."""

    config_maps: dict[tuple[str, str], Resource]
    backend_cert: BackendClientCert | None = None


def _no_valid_ca(state: ListenerState, failed: Condition | None) -> ListenerState:
    state.conditions = [
        Condition("Accepted", False, "NoValidCACertificate", "no caCertificateRef is usable"),
        Condition("Programmed", False, "Invalid"),
        failed or Condition("ResolvedRefs", False, "InvalidCACertificateRef"),
        Condition("Conflicted", False, "NoConflicts"),
    ]
    return state


def _mutual_credentials(
    gw: Resource, listener: Listener, sources: list[Resource], ca_pem: str
) -> tuple[list[str], list[Resource]]:
    """The listener's certificates re-issued with the CA bundle (MUTUAL servers)."""
    names: list[str] = []
    made: list[Resource] = []
    for source in sources:
        secret = mutual_secret(gw, listener, source, ca_pem)
        if secret is not None:
            names.append(secret.name)
            made.append(secret)
    return names, made


def _listener_state(
    gw: Resource,
    listener: Listener,
    index: ConfigIndex,
    conflict: str | None,
    gw_tls: _GatewayTls | None = None,
) -> tuple[ListenerState, list[Resource]]:
    """The listener's state and what it derives (its Istio Gateway, certificate copies)."""
    gw_tls = gw_tls or _GatewayTls({})
    kinds, invalid = _supported_kinds(listener)
    state = ListenerState(gw, listener, "", kinds)
    if listener.protocol not in _ISTIO_PROTOCOL:
        what = f"protocol {listener.protocol}"
        state.conditions = [
            Condition("Accepted", False, "UnsupportedProtocol", f"{what} is not supported"),
            Condition("Programmed", False, "Invalid"),
            Condition("ResolvedRefs", True, "ResolvedRefs"),
            Condition("Conflicted", False, "NoConflicts"),
        ]
        return state, []
    copies: list[Resource] = []
    sources: list[Resource] = []
    credentials, failed = _certificates(gw, listener, index, copies, sources)
    validation = frontend_validation(gw, listener, index, gw_tls.config_maps)
    if validation is not None and failed is None:
        if not validation.ca_pem:
            return _no_valid_ca(state, validation.failed), []
        failed = validation.failed
        credentials, copies = _mutual_credentials(gw, listener, sources, validation.ca_pem)
    resolved = failed or Condition("ResolvedRefs", True, "ResolvedRefs")
    if invalid and failed is None:
        resolved = Condition(
            "ResolvedRefs",
            False,
            "InvalidRouteKinds",
            f"route kinds {', '.join(invalid)} are not supported on {listener.protocol}",
        )
    conflicted = Condition(
        "Conflicted",
        conflict is not None,
        "ProtocolConflict" if conflict else "NoConflicts",
        conflict or "",
    )
    # A bad CA ref next to a usable one is reported but the listener is served.
    usable = (failed is None or failed is getattr(validation, "failed", None)) and not conflict
    state.conditions = [
        Condition(
            "Accepted", conflict is None, "Accepted" if conflict is None else "ProtocolConflict"
        ),
        Condition("Programmed", usable, "Programmed" if usable else "Invalid"),
        resolved,
        conflicted,
    ]
    if not usable:
        return state, []
    spec = IstioGatewaySpec(
        selector={GATEWAY_NAME_LABEL: gw.name},
        servers=[_server(listener, credentials, validation)],
    )
    annotations = {SCOPE_NAMESPACE: gw.namespace}
    if validation is not None and validation.insecure_fallback:
        annotations[ACCEPT_UNTRUSTED_ANNOTATION] = "true"
    if gw_tls.backend_cert is not None and gw_tls.backend_cert.secret:
        annotations[BACKEND_CLIENT_CERT_ANNOTATION] = gw_tls.backend_cert.secret
    istio = derived(
        "Gateway",
        "networking.istio.io/v1",
        gw.namespace,
        safe_name(gw.name, listener.name),
        spec,
        [gw],
        annotations,
    )
    state.istio_gateway = f"{istio.namespace}/{istio.name}"
    return state, [istio, *copies]


def listener_findings(state: GatewayState) -> list[Diagnostic]:
    """``analyze`` warnings for the listeners that are not fully usable."""
    findings = Findings(state.resource)
    for i, ls in enumerate(state.listeners):
        for c in ls.conditions:
            bad = (c.type == "Conflicted") == c.ok
            if not bad or c.type == "Programmed":
                continue
            field = f"spec.listeners[{i}]"
            if c.message.startswith("caCertificateRef") or c.reason == "NoValidCACertificate":
                field = _frontend_field(state.resource, ls.listener.port)
            elif c.reason in ("InvalidCertificateRef", "RefNotPermitted"):
                field += ".tls.certificateRefs"
            elif c.reason == "UnsupportedProtocol":
                field += ".protocol"
            elif c.reason == "InvalidRouteKinds":
                field += ".allowedRoutes.kinds"
            findings.warning(field, f"{c.reason}: {c.message or c.type}")
    if state.backend_cert is not None and not state.backend_cert.resolved.ok:
        c = state.backend_cert.resolved
        findings.warning("spec.tls.backend.clientCertificateRef", f"{c.reason}: {c.message}")
    # Documents spell the kind Gateway.
    return [replace(d, kind="Gateway") for d in findings.items]


def _frontend_field(gw: Resource, port: int) -> str:
    """The field of the frontend validation that applies to listeners on ``port``."""
    spec = gw.spec
    assert isinstance(spec, GatewaySpec)
    frontend = spec.tls.frontend if spec.tls is not None else None
    for j, entry in enumerate(frontend.per_port if frontend is not None else ()):
        if entry.port == port:
            return f"spec.tls.frontend.perPort[{j}].tls.validation.caCertificateRefs"
    return "spec.tls.frontend.default.validation.caCertificateRefs"


def convert_gateways(
    resources: tuple[Resource, ...], index: ConfigIndex
) -> tuple[list[GatewayState], list[Resource]]:
    """The served Gateways' states and their derived Istio Gateways."""
    states: list[GatewayState] = []
    derived_gateways: list[Resource] = []
    seen: set[ResourceKey] = set()
    config_maps = {(r.namespace, r.name): r for r in resources if r.kind == "ConfigMap"}
    for gw in resources:
        if gw.kind != "KubernetesGateway":
            continue
        assert isinstance(gw.spec, GatewaySpec)
        controller = index.controller_of(gw.spec.gateway_class_name)
        if controller is None or controller not in SERVED_CONTROLLERS:
            continue
        conflicts = _conflicts(gw.spec)
        gw_tls = _GatewayTls(config_maps, backend_client_cert(gw, index))
        listeners = []
        made_here: list[Resource] = []
        if gw_tls.backend_cert is not None and gw_tls.backend_cert.copy is not None:
            made_here.append(gw_tls.backend_cert.copy)
        for listener in gw.spec.listeners:
            conflict = conflicts.get(listener.name)
            state, made = _listener_state(gw, listener, index, conflict, gw_tls)
            listeners.append(state)
            made_here += made
        for res in made_here:  # two listeners may copy the same certificate
            if res.key not in seen:
                seen.add(res.key)
                derived_gateways.append(res)
        insecure = any(
            v is not None and v.insecure_fallback
            for v in (frontend_validation(gw, ls, index, config_maps) for ls in gw.spec.listeners)
        )
        states.append(GatewayState(gw, controller, listeners, gw_tls.backend_cert, insecure))
    return states, derived_gateways


def programmed_condition(
    addresses: list[dict[str, str]], namespace: str, name: str, why_missing: str = ""
) -> Condition:
    """``Programmed``: true once the Gateway's workload has an address, else
    ``AddressNotAssigned`` naming the label its workload must carry."""
    if addresses:
        return Condition("Programmed", True, "Programmed")
    return Condition(
        "Programmed",
        False,
        "AddressNotAssigned",
        f"no workload labelled {GATEWAY_NAME_LABEL}={name} is registered in {namespace} yet"
        + why_missing,
    )


def gateway_status(state: GatewayState, index: ConfigIndex) -> dict[str, Any]:
    gw = state.resource
    addresses = gateway_addresses(index, gw.namespace, gw.name)
    usable = any(ls.istio_gateway for ls in state.listeners)
    if not usable:
        programmed = Condition("Programmed", False, "Invalid", "no listener is usable")
    else:
        programmed = programmed_condition(addresses, gw.namespace, gw.name)
    accepted = Condition("Accepted", True, "Accepted")
    gateway_conditions = [accepted, programmed, _resolved_refs(state)]
    if state.insecure_frontend:
        gateway_conditions.append(
            Condition(
                "InsecureFrontendValidationMode",
                True,
                "ConfigurationChanged",
                "a listener accepts clients without a valid certificate "
                "(frontend validation mode AllowInsecureFallback)",
            )
        )
    listeners = [
        {
            "name": ls.listener.name,
            "supportedKinds": [{"group": GROUP, "kind": k} for k in ls.supported_kinds],
            "attachedRoutes": ls.attached_routes,
            "conditions": conditions(gw, ls.conditions),
        }
        for ls in state.listeners
    ]
    return {
        "addresses": addresses,
        "conditions": conditions(gw, gateway_conditions),
        "listeners": listeners,
    }


def _resolved_refs(state: GatewayState) -> Condition:
    """The Gateway's ResolvedRefs: its backend client certificate, then its listeners'."""
    if state.backend_cert is not None and not state.backend_cert.resolved.ok:
        return state.backend_cert.resolved
    for ls in state.listeners:
        if any(c.type == "ResolvedRefs" and not c.ok for c in ls.conditions):
            return Condition(
                "ResolvedRefs",
                False,
                "ListenersNotResolved",
                f"listener {ls.listener.name} has unresolved references",
            )
    return Condition("ResolvedRefs", True, "ResolvedRefs")
