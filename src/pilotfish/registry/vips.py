"""Virtual IPs for services that have none, as Kubernetes gives every Service a clusterIP.

Addresses come from a configured range (none by default: a plain control plane
does not need them; the local runtime uses them so that pods can dial
``reviews:9080`` and be captured by destination). Each hostname hashes to a
slot; collisions probe forward in hostname order, so the same set of services
always gets the same addresses and adding a service almost never moves another.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable

__all__ = ["allocate_vips"]

_SKIP_FIRST = 10  # keep the low addresses of the range for well-known uses


def allocate_vips(hostnames: Iterable[str], cidr: str, taken: Iterable[str] = ()) -> dict[str, str]:
    """hostname -> VIP for every hostname, avoiding ``taken`` addresses."""
    net = ipaddress.ip_network(cidr)
    size = net.num_addresses - _SKIP_FIRST - 1
    if size <= 0:
        raise ValueError(f"service range {cidr} is too small")
    used = {int(ipaddress.ip_address(a)) - int(net.network_address) for a in taken}
    out: dict[str, str] = {}
    for hostname in sorted(set(hostnames)):
        digest = int.from_bytes(hashlib.sha256(hostname.encode()).digest()[:8], "big")
        slot = _SKIP_FIRST + digest % size
        for _ in range(size):
            if slot not in used:
                break
            slot = _SKIP_FIRST + (slot - _SKIP_FIRST + 1) % size
        else:
            raise ValueError(f"service range {cidr} is full")
        used.add(slot)
        out[hostname] = str(net.network_address + slot)
    return out
