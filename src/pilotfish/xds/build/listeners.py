"""IR listeners -> Envoy ``Listener`` protos.

``use_original_dst`` means "this listener receives iptables-redirected
connections" and maps differently by direction, because Envoy's listener flag
of the same name does two things at once:

- outbound (and gateway) capture listeners set the flag. Envoy then restores
  the original destination (it appends the ``original_dst`` listener filter
  itself, so listing it too would run it twice) and hands the connection to
  the listener declared for that address, typically one with
  ``bind_to_port: false``; connections no listener claims stay here. This is
  Istio's ``virtualOutbound``.
- inbound capture listeners list the ``original_dst`` listener filter
  explicitly and do not set the flag: inbound connections must be matched by
  this listener's filter chains (on ``destination_port``), never handed to an
  outbound listener that happens to be declared for the same port. This is
  Istio's ``virtualInbound``.

Protocol sniffing listener filters follow: ``tls_inspector`` then
``http_inspector``, as Istio orders them.
"""

from __future__ import annotations

import ipaddress

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from google.protobuf import wrappers_pb2

from pilotfish import ir
from pilotfish.xds.build._common import any_of
from pilotfish.xds.build.endpoints import socket_address
from pilotfish.xds.build.network_filters import build_network_filters
from pilotfish.xds.build.tls import downstream_transport_socket

__all__ = [
    "HTTP_INSPECTOR",
    "ORIGINAL_DST",
    "TLS_INSPECTOR",
    "build_cidr_range",
    "build_filter_chain",
    "build_filter_chain_match",
    "build_listener",
]

ORIGINAL_DST = "envoy.filters.listener.original_dst"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"


def build_listener(listener: ir.Listener) -> listener_pb2.Listener:
    """The ``Listener`` proto for ``listener`` (see the module docstring for
    ``use_original_dst``).

    Raises ``ValueError`` for a malformed CIDR in a filter chain match.
    """
    gateway = listener.direction == "gateway"
    inspect_tls = listener.inspect_tls or _needs_tls_inspector(listener)
    proto = listener_pb2.Listener(
        name=listener.name,
        address=socket_address(listener.address, listener.port),
        filter_chains=[build_filter_chain(fc, gateway=gateway) for fc in listener.filter_chains],
        traffic_direction=(
            base_pb2.INBOUND if listener.direction == "inbound" else base_pb2.OUTBOUND
        ),
    )
    if listener.default_chain is not None:
        proto.default_filter_chain.CopyFrom(
            build_filter_chain(listener.default_chain, gateway=gateway)
        )
    if not listener.bind_to_port:
        proto.bind_to_port.value = False
    if listener.use_original_dst and listener.direction == "inbound":
        proto.listener_filters.append(
            lc_pb2.ListenerFilter(
                name=ORIGINAL_DST, typed_config=any_of(original_dst_pb2.OriginalDst())
            )
        )
    elif listener.use_original_dst:
        proto.use_original_dst.value = True
    if inspect_tls:
        proto.listener_filters.append(
            lc_pb2.ListenerFilter(
                name=TLS_INSPECTOR, typed_config=any_of(tls_inspector_pb2.TlsInspector())
            )
        )
    if listener.inspect_http:
        proto.listener_filters.append(
            lc_pb2.ListenerFilter(
                name=HTTP_INSPECTOR, typed_config=any_of(http_inspector_pb2.HttpInspector())
            )
        )
    if inspect_tls or listener.inspect_http:
        # A client that waits for the server to speak first must not be cut off
        # when sniffing times out: fall through to the default chain instead.
        proto.continue_on_listener_filters_timeout = True
    return proto


def _needs_tls_inspector(listener: ir.Listener) -> bool:
    """Whether a chain matches on what only ``tls_inspector`` detects (TLS or not,
    SNI) or terminates TLS: without the inspector every connection counts as
    ``raw_buffer`` without SNI, and TLS chains would never be picked."""
    chains = [*listener.filter_chains]
    if listener.default_chain is not None:
        chains.append(listener.default_chain)
    for chain in chains:
        match = chain.match
        if chain.tls is not None:
            return True
        if match is not None and (match.transport_protocol == "tls" or match.server_names):
            return True
    return False


def build_filter_chain(chain: ir.FilterChain, *, gateway: bool = False) -> lc_pb2.FilterChain:
    """A filter chain holding the chain's network filter (a TCP proxy preceded by
    its authorization filters), behind TLS when ``chain.tls`` is set."""
    filters = build_network_filters(
        chain.filter, gateway=gateway, peer_certified=_peer_certified(chain.tls)
    )
    proto = lc_pb2.FilterChain(name=chain.name, filters=filters)
    if chain.match is not None:
        proto.filter_chain_match.CopyFrom(build_filter_chain_match(chain.match))
    if chain.tls is not None:
        proto.transport_socket.CopyFrom(downstream_transport_socket(chain.tls))
    return proto


def _peer_certified(tls: ir.DownstreamTls | None) -> bool | None:
    """What a chain's TLS guarantees about every connection it accepts, i.e.
    the value of CEL's ``connection.mtls`` (TLS with a client certificate
    presented): True when the handshake requires a client certificate, False
    for plaintext, None for TLS with an optional one. When it is known here the
    stats loggers need no per-request check of it."""
    if tls is None:
        return False
    return True if tls.require_client_cert else None


def build_filter_chain_match(match: ir.FilterChainMatch) -> lc_pb2.FilterChainMatch:
    """Destination port, destination CIDRs, transport protocol, ALPN and SNI."""
    proto = lc_pb2.FilterChainMatch(
        prefix_ranges=[build_cidr_range(cidr) for cidr in match.prefix_ranges],
        application_protocols=list(match.application_protocols),
        server_names=list(match.server_names),
    )
    if match.destination_port is not None:
        proto.destination_port.value = match.destination_port
    if match.transport_protocol is not None:
        proto.transport_protocol = match.transport_protocol
    return proto


def build_cidr_range(cidr: str) -> address_pb2.CidrRange:
    """``"10.96.0.0/16"`` (or a bare address: one host) as a ``CidrRange``.

    Host bits are cleared, so ``10.0.0.7/8`` becomes ``10.0.0.0/8``. Raises
    ``ValueError`` for anything that is not an IPv4 or IPv6 address or network.
    """
    network = ipaddress.ip_network(cidr.strip(), strict=False)
    return address_pb2.CidrRange(
        address_prefix=str(network.network_address),
        prefix_len=wrappers_pb2.UInt32Value(value=network.prefixlen),
    )
