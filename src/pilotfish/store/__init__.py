"""Configuration stores: where validated resources live and how changes are watched."""

from __future__ import annotations

from pilotfish.store._common import Validator
from pilotfish.store.base import Store, StoreError
from pilotfish.store.composite import CompositeStore
from pilotfish.store.etcd import EtcdStore
from pilotfish.store.files import FileStore
from pilotfish.store.memory import MemoryStore

__all__ = [
    "CompositeStore",
    "EtcdStore",
    "FileStore",
    "MemoryStore",
    "Store",
    "StoreError",
    "Validator",
]
