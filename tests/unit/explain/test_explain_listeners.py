"""Filter chain selection with Envoy's FilterChainMatch order."""

from __future__ import annotations

from pilotfish import ir
from pilotfish.explain.listeners import Connection, select_chain


def _chain(name: str, **match: object) -> ir.FilterChain:
    return ir.FilterChain(name, ir.TcpProxy(name, name), ir.FilterChainMatch(**match))  # type: ignore[arg-type]


LISTENER = ir.Listener(
    "l",
    "0.0.0.0",
    15001,
    (
        _chain("port-80", destination_port=80),
        _chain("wide", destination_port=9080, prefix_ranges=("10.0.0.0/8",)),
        _chain("narrow", destination_port=9080, prefix_ranges=("10.96.0.0/16", "10.1.0.0/16")),
        _chain("tls", destination_port=443, transport_protocol="tls"),
        _chain("plain", destination_port=443, transport_protocol="raw_buffer"),
        _chain("sni-exact", destination_port=8443, server_names=("a.example.com",)),
        _chain("sni-wild", destination_port=8443, server_names=("*.example.com",)),
    ),
    default_chain=ir.FilterChain("default", ir.TcpProxy("d", "PassthroughCluster")),
)


def _pick(conn: Connection) -> str:
    chain, _reasons = select_chain(LISTENER, conn)
    assert chain is not None
    return chain.name


def test_most_specific_destination_address_wins() -> None:
    assert _pick(Connection("10.96.0.20", 9080)) == "narrow"
    assert _pick(Connection("10.2.0.1", 9080)) == "wide"
    # No chain for this address on that port: the default chain.
    assert _pick(Connection("192.168.0.1", 9080)) == "default"


def test_transport_and_server_name() -> None:
    assert _pick(Connection("1.2.3.4", 443, "tls")) == "tls"
    assert _pick(Connection("1.2.3.4", 443)) == "plain"
    assert _pick(Connection("1.2.3.4", 8443, "tls", "a.example.com")) == "sni-exact"
    assert _pick(Connection("1.2.3.4", 8443, "tls", "b.example.com")) == "sni-wild"
    assert _pick(Connection("1.2.3.4", 8443, "tls", "example.com")) == "default"


def test_reasons_name_the_criterion_that_decided() -> None:
    chain, reasons = select_chain(LISTENER, Connection("10.96.0.20", 9080))
    assert chain is not None
    assert (
        reasons[0] == "destination port: port-80, tls, plain, sni-exact, sni-wild do not match 9080"
    )
    assert reasons[1].startswith("destination address: wide ruled out")
    assert reasons[-1] == "filter chain narrow matches"
