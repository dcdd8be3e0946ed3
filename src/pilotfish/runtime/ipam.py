"""Address management for pods: one address per owner out of a CIDR.

Addresses are handed out in order, lowest free first, after the first
``reserved`` host addresses (with ``reserved=1`` the first host address is the
gateway, i.e. the mesh bridge). An owner that asks again gets the address it
already holds, so a restarted pod keeps its address. The state round-trips
through JSON so the runtime can persist it in its state directory and a later
``pilotfish up`` or ``down`` sees the same allocations.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

__all__ = ["Ipam", "IpamError", "IpamExhaustedError"]


class IpamError(ValueError):
    """Invalid configuration or persisted state."""


class IpamExhaustedError(IpamError):
    """Every address of the range is in use."""


class Ipam:
    """Allocates host addresses of ``cidr`` to owners (pod names).

    Contract:
    - ``allocate(owner)`` returns the same address for the same owner until
      ``release(owner)``; different owners never share an address.
    - Addresses are the network's host addresses (no network or broadcast
      address for IPv4 prefixes shorter than /31), skipping the first
      ``reserved`` of them.
    - A released address is handed out again (lowest free address first).
    """

    def __init__(self, cidr: str, reserved: int = 1) -> None:
        try:
            self._net = ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            raise IpamError(f"invalid CIDR {cidr!r}: {exc}") from exc
        if reserved < 0:
            raise IpamError(f"reserved must be >= 0, got {reserved}")
        self._reserved = reserved
        # Host addresses as offsets from the network address.
        if self._net.num_addresses <= 2:
            self._first_host, self._last_host = 0, self._net.num_addresses - 1
        else:
            self._first_host, self._last_host = 1, self._net.num_addresses - 2
        if self._first_host + reserved > self._last_host:
            raise IpamError(f"{cidr} has no address left after reserving {reserved}")
        self._by_owner: dict[str, int] = {}
        self._used: set[int] = set()

    @property
    def cidr(self) -> str:
        return str(self._net)

    @property
    def prefixlen(self) -> int:
        return self._net.prefixlen

    @property
    def reserved(self) -> int:
        return self._reserved

    @property
    def capacity(self) -> int:
        """How many addresses can be allocated in total."""
        return self._last_host - self._first_host + 1 - self._reserved

    def reserved_address(self, index: int = 0) -> str:
        """The ``index``-th reserved address (0: the gateway when ``reserved >= 1``)."""
        if not 0 <= index < self._reserved:
            raise IpamError(f"{self.cidr} reserves {self._reserved} address(es), not #{index}")
        return str(self._net.network_address + self._first_host + index)

    def allocate(self, owner: str) -> str:
        """The owner's address, allocating the lowest free one on first use."""
        if owner in self._by_owner:
            return self._address(self._by_owner[owner])
        for offset in range(self._first_host + self._reserved, self._last_host + 1):
            if offset not in self._used:
                self._by_owner[owner] = offset
                self._used.add(offset)
                return self._address(offset)
        raise IpamExhaustedError(
            f"no free address left in {self.cidr} for {owner!r}: "
            f"{len(self._used)} in use, {self._reserved} reserved; use a larger range"
        )

    def release(self, owner: str) -> None:
        """Free the owner's address. Releasing an unknown owner does nothing."""
        offset = self._by_owner.pop(owner, None)
        if offset is not None:
            self._used.discard(offset)

    def get(self, owner: str) -> str | None:
        """The owner's address, or None when it holds none."""
        offset = self._by_owner.get(owner)
        return None if offset is None else self._address(offset)

    def allocations(self) -> dict[str, str]:
        """owner -> address, sorted by address."""
        items = sorted(self._by_owner.items(), key=lambda kv: kv[1])
        return {owner: self._address(offset) for owner, offset in items}

    def to_json(self) -> str:
        """The whole state as a JSON document (see ``from_json``)."""
        doc: dict[str, Any] = {
            "cidr": self.cidr,
            "reserved": self._reserved,
            "allocations": self.allocations(),
        }
        return json.dumps(doc, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Ipam:
        """Rebuild an ``Ipam`` saved by ``to_json``; rejects inconsistent state."""
        try:
            doc = json.loads(text)
            cidr = doc["cidr"]
            reserved = doc["reserved"]
            allocations = doc["allocations"]
        except (ValueError, KeyError, TypeError) as exc:
            raise IpamError(f"invalid IPAM state: {exc}") from exc
        if not (isinstance(cidr, str) and isinstance(reserved, int)):
            raise IpamError("invalid IPAM state: cidr must be a string, reserved an integer")
        if not isinstance(allocations, dict):
            raise IpamError("invalid IPAM state: allocations must be an object")
        ipam = cls(cidr, reserved)
        for owner, address in allocations.items():
            ipam._restore(str(owner), str(address))
        return ipam

    def _restore(self, owner: str, address: str) -> None:
        try:
            offset = int(ipaddress.ip_address(address)) - int(self._net.network_address)
        except ValueError as exc:
            raise IpamError(f"invalid IPAM state: {exc}") from exc
        if not self._first_host + self._reserved <= offset <= self._last_host:
            raise IpamError(f"invalid IPAM state: {address} ({owner}) is not allocatable")
        if offset in self._used:
            raise IpamError(f"invalid IPAM state: {address} is allocated twice")
        self._by_owner[owner] = offset
        self._used.add(offset)

    def _address(self, offset: int) -> str:
        return str(self._net.network_address + offset)
