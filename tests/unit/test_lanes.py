"""Test lanes: each pytest-xdist worker's meshes get names and ranges of their own."""

from __future__ import annotations

import importlib
import ipaddress
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

import lanes

# Every range the e2e and integration meshes use in a serial run.
SUITE_RANGES = (
    "198.18.240.0/24",
    "198.18.241.0/24",
    "198.18.242.0/24",
    "198.18.246.0/24",
    "198.18.250.0/24",
    "198.18.81.0/24",
    "198.19.240.0/24",
    "198.19.241.0/24",
    "198.19.242.0/24",
    "198.19.246.0/24",
    "198.19.250.0/24",
    "198.19.81.0/24",
    "127.79.0.0/24",
    "127.79.242.0/24",
    "127.81.0.0/24",
    "127.242.0.0/24",
    "127.250.0.0/24",
    "127.76.0.0/24",
    "127.76.1.0/24",
    "127.78.1.0/24",
)


Loader = Callable[..., ModuleType]


@pytest.fixture
def lane(monkeypatch: pytest.MonkeyPatch) -> Iterator[Loader]:
    def load(worker: str | None, count: int = 2) -> ModuleType:
        if worker is None:
            monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
            monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
        else:
            monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
            monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(count))
        return importlib.reload(lanes)

    yield load
    monkeypatch.undo()
    importlib.reload(lanes)


def test_a_serial_run_and_lane_zero_keep_the_names_tests_write(lane: Loader) -> None:
    for worker in (None, "gw0"):
        m = lane(worker)
        assert m.lane_bridge("pfe2c") == "pfe2c"
        assert m.lane_cidr("198.18.242.0/24") == "198.18.242.0/24"
        assert m.lane_address("198.18.242.250") == "198.18.242.250"
    assert lane(None).lane_port_range(10000, 32768) is None


def test_two_lanes_share_no_bridge_netns_prefix_range_or_port(lane: Loader) -> None:
    zero = lane("gw0")
    names0 = {zero.lane_bridge(b) for b in ("pfe2c", "pfe2e", "pfexpl")}
    nets0 = [ipaddress.ip_network(zero.lane_cidr(c)) for c in SUITE_RANGES]
    ports0 = zero.lane_port_range(10000, 32768)
    one = lane("gw1")
    names1 = {one.lane_bridge(b) for b in ("pfe2c", "pfe2e", "pfexpl")}
    nets1 = [ipaddress.ip_network(one.lane_cidr(c)) for c in SUITE_RANGES]
    ports1 = one.lane_port_range(10000, 32768)
    assert names1 == {"pfe2c1", "pfe2e1", "pfexpl1"}
    # Netns prefixes are "<bridge>-": neither lane's prefixes start another's.
    for a in names0:
        for b in names1:
            assert not f"{a}-".startswith(f"{b}-") and not f"{b}-".startswith(f"{a}-")
    assert not any(a.overlaps(b) for a in nets0 for b in nets1)
    bridge_ip = ipaddress.ip_address(one.lane_address("198.18.242.1"))
    assert bridge_ip in ipaddress.ip_network(one.lane_cidr("198.18.242.0/24"))
    assert ports0 == "10000-21383" and ports1 == "21384-32767"


def test_ranges_wider_than_a_24_are_refused(lane: Loader) -> None:
    with pytest.raises(ValueError, match="/24"):
        lane("gw1").lane_cidr("198.18.0.0/16")


def test_three_lanes_are_pairwise_apart(lane: Loader) -> None:
    nets, ports = [], []
    for n in range(3):
        m = lane(f"gw{n}", 3)
        nets.append([ipaddress.ip_network(m.lane_cidr(c)) for c in SUITE_RANGES])
        low, high = map(int, m.lane_port_range(10000, 32768).split("-"))
        ports.append(range(low, high + 1))
    for i in range(3):
        for j in range(i + 1, 3):
            assert not any(a.overlaps(b) for a in nets[i] for b in nets[j]), (i, j)
            assert not set(ports[i]) & set(ports[j]), (i, j)
