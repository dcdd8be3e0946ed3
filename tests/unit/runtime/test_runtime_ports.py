"""Ports chosen for later binds stay out of the range outgoing connections draw from."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import pytest

from pilotfish.runtime import ports
from pilotfish.runtime.ports import free_port


def _ephemeral_start() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    chosen = [free_port() for _ in range(50)]
    assert len(set(chosen)) == len(chosen)
    assert all(10000 <= port < _ephemeral_start() for port in chosen)
    for port in chosen[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
            sock.listen()


def test_a_port_held_on_another_loopback_address_is_not_chosen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.2", 0))
        held.listen()
        busy = int(held.getsockname()[1])
        # The held port (in the ephemeral range, so below 61000) is offered first.
        offers = itertools.chain([busy], itertools.count(busy + 1))
        monkeypatch.setattr(ports, "_ephemeral_start", lambda: 65536)
        monkeypatch.setattr(ports.random, "randrange", lambda _lo, _hi: next(offers))
        assert free_port() != busy


def test_a_configured_range_is_where_ports_come_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ports.PORT_RANGE_ENV, "23000-23099")
    chosen = [free_port() for _ in range(20)]
    assert len(set(chosen)) == len(chosen)
    assert all(23000 <= port <= 23099 for port in chosen)


def test_a_full_configured_range_is_an_error_not_a_port_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = int(held.getsockname()[1])
        monkeypatch.setenv(ports.PORT_RANGE_ENV, f"{busy}-{busy}")
        with pytest.raises(OSError, match=f"PILOTFISH_PORT_RANGE {busy}-{busy}"):
            free_port()


@pytest.mark.parametrize("spec", ["20000", "a-b", "30000-20000", "80-90", "20000-70000"])
def test_a_malformed_range_names_the_variable(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.setenv(ports.PORT_RANGE_ENV, spec)
    with pytest.raises(ValueError, match="PILOTFISH_PORT_RANGE"):
        free_port()


def test_a_mesh_keeps_the_ports_it_was_given_from_free_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pilotfish.runtime.mesh import MeshRuntime
    from pilotfish.runtime.settings import RuntimeSettings

    with socket.socket() as probe:  # a free port free_port never handed out
        probe.bind(("127.0.0.1", 0))
        given = int(probe.getsockname()[1])
    monkeypatch.setenv(ports.PORT_RANGE_ENV, f"{given}-{given}")
    # The ingress listener binds it only once its gateway runs; meanwhile the mesh
    # draws admin ports, which must never be that one.
    MeshRuntime(RuntimeSettings(state_dir=tmp_path / "state", ingress_port=given))
    with pytest.raises(OSError, match=f"PILOTFISH_PORT_RANGE {given}-{given}"):
        free_port()
