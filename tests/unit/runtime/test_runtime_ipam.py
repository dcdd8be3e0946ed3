from __future__ import annotations

import json

import pytest

from pilotfish.runtime.ipam import Ipam, IpamError, IpamExhaustedError


def test_first_host_address_is_reserved_for_the_gateway() -> None:
    ipam = Ipam("198.18.0.0/16")
    assert ipam.reserved_address(0) == "198.18.0.1"
    assert ipam.allocate("a") == "198.18.0.2"
    assert ipam.allocate("b") == "198.18.0.3"


def test_same_owner_gets_the_same_address() -> None:
    ipam = Ipam("10.1.0.0/24")
    first = ipam.allocate("reviews-v1-0")
    ipam.allocate("other")
    assert ipam.allocate("reviews-v1-0") == first
    assert ipam.get("reviews-v1-0") == first
    assert ipam.get("unknown") is None


def test_release_frees_the_address_for_the_lowest_free_reuse() -> None:
    ipam = Ipam("10.1.0.0/24")
    a, b, c = (ipam.allocate(n) for n in "abc")
    ipam.release("b")
    ipam.release("b")  # idempotent
    assert ipam.get("b") is None
    assert ipam.allocate("d") == b
    assert ipam.allocate("e") == "10.1.0.5"
    assert ipam.allocations() == {"a": a, "d": b, "c": c, "e": "10.1.0.5"}


def test_exhaustion_raises_a_clear_error() -> None:
    ipam = Ipam("10.1.0.0/29")  # hosts .1-.6, .1 reserved
    assert ipam.capacity == 5
    for i in range(5):
        ipam.allocate(f"p{i}")
    with pytest.raises(IpamExhaustedError, match=r"no free address left in 10\.1\.0\.0/29"):
        ipam.allocate("one-too-many")
    ipam.release("p2")
    assert ipam.allocate("one-too-many") == "10.1.0.4"


def test_network_and_broadcast_addresses_are_never_handed_out() -> None:
    ipam = Ipam("10.1.0.0/30", reserved=0)
    assert [ipam.allocate("a"), ipam.allocate("b")] == ["10.1.0.1", "10.1.0.2"]
    with pytest.raises(IpamExhaustedError):
        ipam.allocate("c")


def test_reserved_zero_and_more() -> None:
    assert Ipam("127.77.0.0/16", reserved=0).allocate("a") == "127.77.0.1"
    ipam = Ipam("127.77.0.0/16", reserved=3)
    assert ipam.reserved_address(2) == "127.77.0.3"
    assert ipam.allocate("a") == "127.77.0.4"
    with pytest.raises(IpamError):
        ipam.reserved_address(3)


@pytest.mark.parametrize(
    ("cidr", "reserved"),
    [("not-a-cidr", 1), ("10.1.0.1/24", 1), ("10.1.0.0/30", 2), ("10.0.0.0/24", -1)],
)
def test_invalid_configuration_is_rejected(cidr: str, reserved: int) -> None:
    with pytest.raises(IpamError):
        Ipam(cidr, reserved)


def test_json_round_trip_keeps_allocations_and_continues_in_order() -> None:
    ipam = Ipam("198.18.0.0/16")
    ipam.allocate("a")
    ipam.allocate("b")
    ipam.release("a")
    restored = Ipam.from_json(ipam.to_json())
    assert restored.cidr == "198.18.0.0/16"
    assert restored.reserved == 1
    assert restored.allocations() == {"b": "198.18.0.3"}
    assert restored.allocate("b") == "198.18.0.3"
    assert restored.allocate("c") == "198.18.0.2"
    assert json.loads(restored.to_json())["allocations"] == {
        "c": "198.18.0.2",
        "b": "198.18.0.3",
    }


@pytest.mark.parametrize(
    "doc",
    [
        "not json",
        json.dumps({"cidr": "10.0.0.0/24"}),
        json.dumps({"cidr": "10.0.0.0/24", "reserved": 1, "allocations": []}),
        json.dumps({"cidr": "10.0.0.0/24", "reserved": 1, "allocations": {"a": "10.0.1.5"}}),
        json.dumps({"cidr": "10.0.0.0/24", "reserved": 1, "allocations": {"a": "10.0.0.1"}}),
        json.dumps(
            {
                "cidr": "10.0.0.0/24",
                "reserved": 1,
                "allocations": {"a": "10.0.0.5", "b": "10.0.0.5"},
            }
        ),
    ],
)
def test_inconsistent_state_is_rejected(doc: str) -> None:
    with pytest.raises(IpamError):
        Ipam.from_json(doc)
