"""Where each object lives in etcd: Kubernetes' key layout.

``<prefix>/<group>/<plural>/<namespace>/<name>``, and for the core group
(``v1``: Service, Secret...) ``<prefix>/<plural>/<namespace>/<name>``, with
the prefix ``/registry`` as the Kubernetes API server uses it
(``--etcd-prefix``). The plural and group are Pilotfish's names for the kind
(``api.kinds``): ``/registry/networking.istio.io/virtualservices/default/reviews``.
The version is not part of the key, as in Kubernetes: an object is one key
whichever apiVersion wrote it.
"""

from __future__ import annotations

from pilotfish.api.kinds import KIND_INFO, kind_for_plural
from pilotfish.api.resource import ResourceKey
from pilotfish.store.etcd_target import DEFAULT_PREFIX

__all__ = ["DEFAULT_PREFIX", "KeyLayout"]


class KeyLayout:
    """Turns ``ResourceKey`` into etcd keys and back, under one prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"etcd prefix {prefix!r} must start with '/' and not end with it")
        self.prefix = prefix
        # Every key of the store starts with ``<prefix>/``; the range [start, end)
        # holds exactly those keys (end: the next key after every such prefix).
        self.range_start = prefix + "/"
        self.range_end = prefix + "0"  # '0' is the byte after '/'

    def key(self, key: ResourceKey) -> str:
        info = KIND_INFO[key.kind]
        group = f"{info.group}/" if info.group else ""
        return f"{self.range_start}{group}{info.plural}/{key.namespace}/{key.name}"

    def parse(self, etcd_key: str) -> ResourceKey | None:
        """The object an etcd key names, or None if it is no key of this layout."""
        if not etcd_key.startswith(self.range_start):
            return None
        parts = etcd_key[len(self.range_start) :].split("/")
        if len(parts) == 3:
            group, (plural, namespace, name) = "", parts
        elif len(parts) == 4:
            group, plural, namespace, name = parts
        else:
            return None
        try:
            kind = kind_for_plural(plural, group)
        except KeyError:
            return None
        if KIND_INFO[kind].plural != plural or not namespace or not name:
            return None
        return ResourceKey(kind, namespace, name)
