"""Control-plane settings, built once in ``main()`` and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ControlPlaneSettings"]


@dataclass(frozen=True)
class ControlPlaneSettings:
    config_paths: tuple[str, ...] = field(default_factory=tuple)
    bind: str = "127.0.0.1"
    xds_port: int = 15010
    http_port: int = 15014
    quiet_period: float = 0.1  # push debounce: quiet time before pushing
    max_delay: float = 1.0  # push debounce: longest a change may wait
    poll_interval: float = 0.1  # config directory polling
    domain_suffix: str = "cluster.local"
    root_namespace: str = "istio-system"
