"""Pure parts of pod networking: names, files, commands, explicit mode."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from pilotfish.runtime.network import (
    CommandError,
    ExplicitNetwork,
    ServiceName,
    TransparentNetwork,
    netns_name,
    run_command,
    veth_name,
)
from pilotfish.runtime.network.names import hosts_file, resolv_conf, write_in_place

REVIEWS = ServiceName("reviews.default.svc.cluster.local", "default", "198.19.0.10")
RATINGS = ServiceName("ratings.shop.svc.cluster.local", "shop", "198.19.0.11")
EXTERNAL = ServiceName("api.example.com", "default", "198.19.0.12")


def _service_lines(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        ip, *names = line.split()
        out[ip] = names
    return out


def test_hosts_file_short_names_only_in_own_namespace() -> None:
    lines = _service_lines(hosts_file([RATINGS, REVIEWS, EXTERNAL], "default"))
    assert lines["127.0.0.1"] == ["localhost"]
    assert "localhost" in lines["::1"]
    assert lines["198.19.0.10"] == [
        "reviews.default.svc.cluster.local",
        "reviews.default",
        "reviews.default.svc",
        "reviews",
    ]
    assert lines["198.19.0.11"] == [
        "ratings.shop.svc.cluster.local",
        "ratings.shop",
        "ratings.shop.svc",
    ]
    assert lines["198.19.0.12"] == ["api.example.com"]


def test_hosts_file_without_namespace_and_custom_domain() -> None:
    svc = ServiceName("reviews.default.svc.corp.local", "default", "198.19.0.10")
    text = hosts_file([svc], None, cluster_domain="corp.local")
    assert _service_lines(text)["198.19.0.10"] == [
        "reviews.default.svc.corp.local",
        "reviews.default",
        "reviews.default.svc",
    ]
    with pytest.raises(ValueError):
        hosts_file([ServiceName("x.default.svc.cluster.local", "default", "nope")], None)


def test_resolv_conf_uses_kubernetes_search_list_and_dead_resolver() -> None:
    text = resolv_conf("shop")
    assert "search shop.svc.cluster.local svc.cluster.local cluster.local\n" in text
    assert "nameserver 127.0.0.1\n" in text
    assert "options ndots:5\n" in text
    assert [line for line in text.splitlines() if line.startswith("nameserver")] == [
        "nameserver 127.0.0.1"
    ]
    assert "search svc.cluster.local cluster.local\n" in resolv_conf(None)


def test_write_in_place_keeps_the_inode(tmp_path: Path) -> None:
    path = tmp_path / "netns" / "pf-a" / "hosts"
    write_in_place(path, "first, long content\n")
    inode = os.stat(path).st_ino
    with open(path) as held:  # like a bind mount, an open handle sees the same file
        write_in_place(path, "short\n")
        assert os.stat(path).st_ino == inode
        assert held.read() == "short\n"


def test_netns_and_veth_names() -> None:
    assert netns_name("reviews-v1-0") == "pf-reviews-v1-0"
    odd = netns_name("a/b c")
    assert odd.startswith("pf-a-b-c-") and "/" not in odd
    assert netns_name("a/b") != netns_name("a-b")
    assert len(netns_name("x" * 200)) <= 63
    veth = veth_name("pf-reviews-v1-0")
    assert veth.startswith("pfv") and len(veth) == 11
    assert veth != veth_name("pf-reviews-v2-0")
    assert len(veth_name("n", "pftv123")) == 15
    with pytest.raises(ValueError):
        veth_name("n", "toolongprefix")


def test_transparent_network_validates_names() -> None:
    with pytest.raises(ValueError):
        TransparentNetwork(bridge="a-very-long-bridge-name")
    with pytest.raises(ValueError):
        TransparentNetwork(veth_prefix="prefix-too-long")
    net = TransparentNetwork(bridge="pf9", pod_cidr="198.18.4.0/24")
    assert net.gateway == "198.18.4.1"
    assert net.resources().bridge is None


def test_create_pod_before_setup_is_an_error() -> None:
    calls: list[list[str]] = []

    def runner(argv: Sequence[str], *, input: str | None = None) -> str:
        calls.append(list(argv))
        return ""

    net = TransparentNetwork(bridge="pf9", runner=runner)
    with pytest.raises(RuntimeError, match="setup"):
        net.create_pod("a", None)
    assert calls == []


def test_run_command_error_names_command_and_stderr() -> None:
    argv = [sys.executable, "-c", "import sys; sys.stderr.write('boom happened'); sys.exit(3)"]
    with pytest.raises(CommandError) as info:
        run_command(argv)
    assert info.value.returncode == 3
    assert "boom happened" in str(info.value)
    assert "sys.exit(3)" in str(info.value)
    assert run_command([sys.executable, "-c", "print('ok')"]) == "ok\n"
    assert run_command([sys.executable, "-c", "print(input())"], input="fed\n") == "fed\n"
    with pytest.raises(CommandError, match="no-such-binary"):
        run_command(["no-such-binary-pilotfish"])


def test_explicit_network_hands_out_loopback_addresses() -> None:
    net = ExplicitNetwork()
    assert net.mode == "explicit"
    net.setup()
    a = net.create_pod("a", None)
    b = net.create_pod("b", None)
    assert (a.ip, b.ip) == ("127.77.0.2", "127.77.0.3")
    assert a.netns is None and a.exec_prefix == ()
    assert net.create_pod("a", None) == a
    net.update_names([REVIEWS], {"a": "default"})
    net.delete_pod("a")
    net.delete_pod("a")
    assert net.pods() == {"b": b}
    net.teardown()
    assert net.ipam.allocations() == {}
    assert net.resources().netns == []
    assert net.create_pod("c", None).ip == "127.77.0.2"


@pytest.mark.parametrize("cidr", ["10.0.0.0/16", "::1/128", "nonsense"])
def test_explicit_network_needs_a_loopback_range(cidr: str) -> None:
    with pytest.raises(ValueError):
        ExplicitNetwork(cidr)


def test_explicit_network_adopts_restored_addresses() -> None:
    from pilotfish.runtime.ipam import Ipam

    first = ExplicitNetwork("127.77.0.0/24")
    first.create_pod("a", None)
    kept = first.create_pod("b", None)
    restored = Ipam.from_json(first.ipam.to_json())
    restored.release("a")  # not adopted
    net = ExplicitNetwork("127.77.0.0/24", ipam=restored)
    assert net.adopt_pod("b") == kept
    # A new pod never takes an adopted pod's address.
    assert net.create_pod("c", None).ip == "127.77.0.2"
    assert net.create_pod("d", None).ip == "127.77.0.4"
    with pytest.raises(ValueError, match="no address"):
        net.adopt_pod("nobody")


def test_transparent_network_adopts_without_touching_the_host(tmp_path: Path) -> None:
    import json

    from pilotfish.runtime.ipam import Ipam

    calls: list[list[str]] = []

    def runner(argv: Sequence[str], *, input: str | None = None) -> str:
        calls.append(list(argv))
        if list(argv[:4]) == ["ip", "-j", "netns", "list"]:
            return json.dumps([{"name": netns_name("a", "pf9-")}])
        return "[]"

    ipam = Ipam("198.18.4.0/24")
    ip = ipam.allocate("a")
    ipam.allocate("gone")
    net = TransparentNetwork(
        bridge="pf9",
        pod_cidr="198.18.4.0/24",
        runner=runner,
        netns_prefix="pf9-",
        ipam=ipam,
        etc_netns=tmp_path,
    )
    with pytest.raises(RuntimeError, match="setup"):
        net.adopt_pod("a")
    net.setup()
    calls.clear()
    address = net.adopt_pod("a", "default")
    assert (address.ip, address.netns) == (ip, netns_name("a", "pf9-"))
    # Only looked: nothing was created or changed.
    assert calls == [["ip", "-j", "netns", "list"]]
    assert net.resources().netns == [address.netns]
    assert net.resources().host_veths == [veth_name(address.netns)]
    with pytest.raises(ValueError, match="is gone"):
        net.adopt_pod("gone")


def test_a_pods_mac_follows_its_address_so_a_reused_address_keeps_it() -> None:
    from pilotfish.runtime.network.transparent import pod_mac

    assert pod_mac("198.18.240.9") == "02:50:c6:12:f0:09"
    assert pod_mac("198.18.240.9") != pod_mac("198.18.240.10")
