"""Choose and build the pod network for a mesh's settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pilotfish.runtime.network.base import PodNetwork

if TYPE_CHECKING:
    from pilotfish.runtime.ipam import Ipam
    from pilotfish.runtime.settings import RuntimeSettings

__all__ = ["bridge_address", "make_network"]


def make_network(settings: RuntimeSettings, ipam: Ipam | None = None) -> PodNetwork:
    """The pod network of ``settings``; ``ipam``: allocations restored from an earlier run."""
    if settings.mode == "transparent":
        from pilotfish.runtime.network.transparent import TransparentNetwork

        return TransparentNetwork(
            bridge=settings.bridge,
            pod_cidr=settings.pod_cidr,
            netns_prefix=settings.netns_prefix,
            ipam=ipam,
        )
    from pilotfish.runtime.network.explicit import ExplicitNetwork

    return ExplicitNetwork(cidr=settings.explicit_cidr, ipam=ipam)


def bridge_address(network: PodNetwork) -> str:
    """The host's address as pods see it (the bridge), or loopback in explicit mode."""
    return str(getattr(network, "gateway", "127.0.0.1"))
