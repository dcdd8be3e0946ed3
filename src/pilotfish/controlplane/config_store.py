"""Which store a control plane serves from: files (the default), etcd, or memory.

``ControlPlaneSettings.config_store`` names an etcd cluster
(``etcd://HOST:PORT[,HOST:PORT...]``, ``etcds://`` for TLS with
``etcd_tls``); without it the files and directories of ``config_paths`` are
the store, and with neither an empty in-memory store (tests, embedding).
"""

from __future__ import annotations

from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.store import EtcdStore, FileStore, MemoryStore, Store
from pilotfish.store.etcd_client import EtcdClient, parse_endpoints

__all__ = ["build_store", "uses_etcd"]


def uses_etcd(settings: ControlPlaneSettings) -> bool:
    return settings.config_store is not None


def build_store(settings: ControlPlaneSettings) -> Store:
    """The store ``settings`` describe. ValueError for an unusable etcd address."""
    if settings.config_store is not None:
        client = EtcdClient(parse_endpoints(settings.config_store), settings.etcd_tls)
        return EtcdStore(client, prefix=settings.etcd_prefix, limits=settings.parse_limits)
    if settings.config_paths:
        return FileStore(
            settings.config_paths,
            poll_interval=settings.poll_interval,
            limits=settings.parse_limits,
        )
    return MemoryStore()
