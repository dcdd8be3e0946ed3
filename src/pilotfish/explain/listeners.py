"""Which listener and filter chain Envoy hands a connection to.

Theory of operation. A sidecar's outbound side has two layouts (see
``translate/sidecar.py``): in ``NONE`` interception the app dials the HTTP
proxy listener on ``bind_ip:outbound_port`` and the Host header carries the
destination; under ``REDIRECT`` iptables sends every connection to
``virtualOutbound`` (``use_original_dst``), which hands it to the listener
whose address and port equal the original destination, else to the
``0.0.0.0:<port>`` one, else keeps it on its own chains. Gateways and the
inbound side of explicit sidecars receive connections on bound listeners.

Inside a listener the filter chain is chosen with Envoy's
``FilterChainMatch`` rules, one criterion after the other: destination port,
destination IP (the longest matching ``prefix_ranges``), server name (exact
before ``*.suffix``), transport protocol, application protocols. At each
criterion chains that name a matching value beat chains that leave it empty;
a chain naming only non-matching values is out. With no chain left the
listener's default chain serves the connection (none: Envoy closes it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pilotfish import ir

__all__ = ["Connection", "find_bound_listener", "handoff_listener", "select_chain"]


@dataclass(frozen=True, slots=True)
class Connection:
    """What a listener knows of a new connection before any bytes are proxied."""

    dst_ip: str
    dst_port: int
    transport: str = "raw_buffer"  # "tls" when the client speaks TLS
    sni: str = ""
    alpn: tuple[str, ...] = ()


def find_bound_listener(
    listeners: Sequence[ir.Listener], address: str, port: int, direction: str | None = None
) -> ir.Listener | None:
    """The listener that owns ``address:port`` (a specific address beats ``0.0.0.0``)."""
    candidates = [
        lst
        for lst in listeners
        if lst.bind_to_port
        and lst.port == port
        and (direction is None or lst.direction == direction)
        and lst.address in (address, "0.0.0.0")
    ]
    candidates.sort(key=lambda lst: lst.address == "0.0.0.0")
    return candidates[0] if candidates else None


def handoff_listener(
    listeners: Sequence[ir.Listener], dst_ip: str, dst_port: int
) -> tuple[ir.Listener | None, str]:
    """The non-binding listener a ``use_original_dst`` listener hands the connection to."""
    exact = [
        lst
        for lst in listeners
        if not lst.bind_to_port and lst.port == dst_port and lst.address == dst_ip
    ]
    if exact:
        return exact[
            0
        ], f"listener {exact[0].name} has the original destination {dst_ip}:{dst_port}"
    wildcard = [
        lst
        for lst in listeners
        if not lst.bind_to_port and lst.port == dst_port and lst.address == "0.0.0.0"
    ]
    if wildcard:
        return wildcard[0], f"listener {wildcard[0].name} serves port {dst_port} on any address"
    return None, f"no listener serves port {dst_port}: the capturing listener's own chains apply"


def _in_ranges(ip: str, ranges: Sequence[str]) -> int | None:
    """The longest prefix length among ``ranges`` containing ``ip`` (None: none does)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    best: int | None = None
    for cidr in ranges:
        net = ipaddress.ip_network(cidr, strict=False)
        if addr.version == net.version and addr in net:
            best = net.prefixlen if best is None else max(best, net.prefixlen)
    return best


def _sni_score(sni: str, names: Sequence[str]) -> int | None:
    """Envoy prefers an exact server name, then the longest ``*.suffix``."""
    best: int | None = None
    for name in names:
        if name == sni:
            return 10_000
        if name.startswith("*.") and sni.endswith(name[1:]) and len(sni) > len(name) - 1:
            best = max(best or 0, len(name))
    return best


def _criteria(conn: Connection) -> list[tuple[str, Callable[[ir.FilterChainMatch], object]]]:
    """(name, scorer) per criterion, in Envoy's order; a scorer returns None when the
    chain leaves the criterion empty, False when it names only other values, and a
    comparable score when it matches."""

    def port(m: ir.FilterChainMatch) -> object:
        return (
            None if m.destination_port is None else (m.destination_port == conn.dst_port or False)
        )

    def ip(m: ir.FilterChainMatch) -> object:
        if not m.prefix_ranges:
            return None
        score = _in_ranges(conn.dst_ip, m.prefix_ranges)
        return False if score is None else score

    def sni(m: ir.FilterChainMatch) -> object:
        if not m.server_names:
            return None
        score = _sni_score(conn.sni, m.server_names) if conn.sni else None
        return False if score is None else score

    def transport(m: ir.FilterChainMatch) -> object:
        if m.transport_protocol is None:
            return None
        return m.transport_protocol == conn.transport or False

    def alpn(m: ir.FilterChainMatch) -> object:
        if not m.application_protocols:
            return None
        return bool(set(m.application_protocols) & set(conn.alpn)) or False

    return [
        ("destination port", port),
        ("destination address", ip),
        ("server name (SNI)", sni),
        ("transport protocol", transport),
        ("application protocol", alpn),
    ]


def select_chain(
    listener: ir.Listener, conn: Connection
) -> tuple[ir.FilterChain | None, list[str]]:
    """The chain of ``listener`` serving ``conn`` and why (each criterion that decided)."""
    chains = list(listener.filter_chains)
    reasons: list[str] = []
    for name, scorer in _criteria(conn):
        if not chains:
            break
        scored = [(c, scorer(c.match or ir.FilterChainMatch())) for c in chains]
        matching = [(c, s) for c, s in scored if s is not None and s is not False]
        if matching:
            top = max(matching, key=lambda cs: _rank(cs[1]))[1]
            kept = [c for c, s in matching if _rank(s) == _rank(top)]
            differ = [c.name for c, s in scored if s is False]
            wider = [c.name for c, s in scored if c not in kept and s is not False]
            if differ:
                reasons.append(f"{name}: {', '.join(differ)} do not match {_value(name, conn)}")
            if wider:
                reasons.append(
                    f"{name}: {', '.join(wider)} ruled out (a more specific chain matches)"
                )
            chains = kept
            continue
        unspecified = [c for c, s in scored if s is None]
        dropped = [c.name for c, s in scored if s is False]
        if dropped:
            reasons.append(f"{name}: {', '.join(dropped)} do not match {_value(name, conn)}")
        chains = unspecified
    if chains:
        chosen = chains[0]
        reasons.append(f"filter chain {chosen.name} matches")
        return chosen, reasons
    if listener.default_chain is not None:
        if listener.filter_chains:
            reasons.append("no filter chain matches")
        reasons.append(f"the listener's default chain {listener.default_chain.name} serves it")
        return listener.default_chain, reasons
    reasons.append(
        "no filter chain matches and there is no default chain: Envoy closes the connection"
    )
    return None, reasons


def _rank(score: object) -> float:
    return float(score) if isinstance(score, int | float) else 0.0


def _value(name: str, conn: Connection) -> str:
    return {
        "destination port": str(conn.dst_port),
        "destination address": conn.dst_ip,
        "server name (SNI)": repr(conn.sni),
        "transport protocol": conn.transport,
        "application protocol": ",".join(conn.alpn) or "none",
    }[name]
