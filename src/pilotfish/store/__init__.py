"""Configuration stores: where validated resources live and how changes are watched.

The stores are imported on first use of their name (``from pilotfish.store
import FileStore`` works as usual): importing them all loads the resource
models and the etcd client, over half a second of CPU, and the command line
imports small parts of this package (``etcd_target``) for its flags.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pilotfish.lazy_exports import LazyExports

if TYPE_CHECKING:
    from pilotfish.store._common import Validator
    from pilotfish.store.base import Store, StoreConflict, StoreError
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
    "StoreConflict",
    "StoreError",
    "Validator",
]

_EXPORTS = LazyExports(
    __name__,
    {
        "CompositeStore": "pilotfish.store.composite",
        "EtcdStore": "pilotfish.store.etcd",
        "FileStore": "pilotfish.store.files",
        "MemoryStore": "pilotfish.store.memory",
        "Store": "pilotfish.store.base",
        "StoreConflict": "pilotfish.store.base",
        "StoreError": "pilotfish.store.base",
        "Validator": "pilotfish.store._common",
    },
)


def __getattr__(name: str) -> object:
    return _EXPORTS.load(name)
