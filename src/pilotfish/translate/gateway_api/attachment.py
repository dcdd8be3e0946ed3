"""Which listeners a route's parentRef attaches it to, and the route's ``parents`` status.

Theory of operation (the Gateway API spec's rules): a parentRef names a
Gateway (and optionally a listener by ``sectionName`` and/or ``port``). Each
listener so named accepts the route when its ``allowedRoutes`` allow the
route's kind and namespace (``Same``, ``All``, or a label ``Selector`` over
the route's Namespace) and the route's hostnames intersect the listener's;
the route then serves that intersection (``*.example.com`` and
``foo.example.com`` give ``foo.example.com``). Such a listener counts the
route in ``attachedRoutes`` even when the listener itself is not usable (a
missing certificate): upstream's GatewayWithAttachedRoutes checks both that a
route with no matching hostname is not counted and that a listener with
unresolved refs still counts its routes. Only usable listeners serve it.
Listeners are isolated from each other (GatewayHTTPListenerIsolation): a
request goes only to the routes of the most specific listener on its port
that matches its host, so a hostname a route serves on one listener is
dropped there when a more specific listener of the same port and protocol
matches all of it (``*.example.com`` served on the listener without a
hostname belongs to a ``*.example.com`` listener). Envoy then picks, among
the remaining virtual hosts, the most specific domain, which is the same
listener's.
When no listener accepts the route the parent's Accepted condition is False
with the spec's reason: ``NoMatchingParent`` (no such Gateway or listener),
``NotAllowedByListeners``, or ``NoMatchingListenerHostname``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pilotfish.api.gateway_api.common import ParentReference
from pilotfish.translate.gateway_api.gateways import GatewayState, ListenerState
from pilotfish.translate.gateway_api.index import ConfigIndex

__all__ = ["Attachment", "ParentResult", "attach", "intersect_hostnames", "isolate"]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A route bound to one listener, for these hostnames (``*`` when any)."""

    listener: ListenerState
    hostnames: tuple[str, ...]


@dataclass
class ParentResult:
    ref: ParentReference
    controller: str
    attachments: list[Attachment] = field(default_factory=list)
    #: Accepted condition's reason when not accepted ("" when accepted).
    refusal: str = ""
    message: str = ""


def _wildcard_covers(pattern: str, host: str) -> bool:
    return pattern.startswith("*.") and host.endswith(pattern[1:]) and host != pattern[2:]


def intersect_hostnames(listener: str | None, route: tuple[str, ...]) -> tuple[str, ...]:
    """The hostnames a route serves on a listener; () when they do not meet."""
    if not route:
        return (listener or "*",)
    if listener is None:
        return route
    out: list[str] = []
    for host in route:
        if host == listener or _wildcard_covers(listener, host):
            out.append(host)
        elif _wildcard_covers(host, listener):
            out.append(listener)
    return tuple(dict.fromkeys(out))


def _specificity(hostname: str | None) -> tuple[int, int]:
    """How specific a listener hostname is: exact over wildcard over none, longer first."""
    if hostname is None:
        return (0, 0)
    return (1 if hostname.startswith("*.") else 2, len(hostname))


def _covers(listener_host: str, host: str) -> bool:
    """Whether a listener with ``listener_host`` takes every request to ``host``
    (itself a name or a wildcard)."""
    return host == listener_host or _wildcard_covers(listener_host, host)


def isolate(
    ls: ListenerState, served: tuple[str, ...], listeners: list[ListenerState]
) -> tuple[str, ...]:
    """``served`` less the hostnames a more specific listener of the same port and
    protocol takes (listener isolation)."""
    mine = _specificity(ls.listener.hostname)
    rivals = [
        other.listener.hostname
        for other in listeners
        if other is not ls
        and other.listener.hostname is not None
        and other.listener.port == ls.listener.port
        and other.listener.protocol == ls.listener.protocol
        and _specificity(other.listener.hostname) > mine
    ]
    return tuple(h for h in served if not any(_covers(r, h) for r in rivals if r))


def _namespace_allowed(ls: ListenerState, route_ns: str, index: ConfigIndex) -> bool:
    allowed = ls.listener.allowed_routes.namespaces
    if allowed.from_ == "All":
        return True
    if allowed.from_ == "Same":
        return route_ns == ls.gateway.namespace
    assert allowed.selector is not None
    return allowed.selector.matches(index.namespace_labels_of(route_ns))


def attach(
    ref: ParentReference,
    route_kind: str,
    route_ns: str,
    hostnames: tuple[str, ...],
    gateways: dict[tuple[str, str], GatewayState],
    index: ConfigIndex,
) -> ParentResult | None:
    """The result of one Gateway parentRef; None when the Gateway is not Pilotfish's."""
    ns = ref.namespace or route_ns
    state = gateways.get((ns, ref.name))
    if state is None:
        # A Gateway of another controller is not ours to report on; a missing one is.
        if index.has_foreign_gateway(ns, ref.name):
            return None
        result = ParentResult(ref, index.default_controller)
        result.refusal, result.message = "NoMatchingParent", f"Gateway {ns}/{ref.name} not found"
        return result
    result = ParentResult(ref, state.controller)
    named = [
        ls
        for ls in state.listeners
        if (ref.section_name is None or ls.listener.name == ref.section_name)
        and (ref.port is None or ls.listener.port == ref.port)
    ]
    if not named:
        result.refusal = "NoMatchingParent"
        result.message = f"Gateway {ns}/{ref.name} has no listener matching the parentRef"
        return result
    allowed = [
        ls
        for ls in named
        if route_kind in ls.supported_kinds and _namespace_allowed(ls, route_ns, index)
    ]
    if not allowed:
        result.refusal = "NotAllowedByListeners"
        result.message = "no listener allows this route's kind and namespace"
        return result
    matched = False
    for ls in allowed:
        served = intersect_hostnames(ls.listener.hostname, hostnames)
        if not served:
            continue
        matched = True
        ls.attached_routes += 1
        served = isolate(ls, served, state.listeners)
        if ls.istio_gateway and served:  # a listener that is not programmed serves nothing
            result.attachments.append(Attachment(ls, served))
    if not matched:
        result.refusal = "NoMatchingListenerHostname"
        result.message = "no listener hostname intersects the route's hostnames"
    return result
