"""A pod's Secret volumes: the Secret's keys written as files, then mounted by the sandbox.

Theory of operation: Kubernetes' kubelet writes a ``secret`` volume's keys
into a per-pod directory and the container runtime mounts it at the
container's ``mountPath``. The local runtime does the same in two steps:

1. ``materialize`` (the supervisor, root) writes each volume of the pod into
   ``<pod dir>/volumes/<n>/``: every key of the Secret as a file of its name,
   or only the volume's ``items``, each at its relative ``path``. The
   directory is the app user's (0500) and the files are readable by it alone
   (0400), so another pod's user cannot read them on the host either. A
   Secret, or an item's key, that does not exist fails the pod's start with
   ``SecretVolumeError``; the runtime tries again at the next configuration
   change, as a kubelet keeps such a pod in ContainerCreating.
2. The app's sandbox (``runtime.sandbox --volume SRC:DST``) binds that
   directory onto ``mountPath`` in the app's private mount namespace.

A ``configMap`` volume is laid out the same way from a ConfigMap's ``data``
(``kind`` ConfigMap, looked up with ``config_maps``).

The files are written when the pod starts: a later change of the Secret
reaches the pod when it is restarted (a kubelet refreshes them after a delay).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from pilotfish.api.core.config_map import ConfigMapSpec
from pilotfish.api.core.secret import SecretSpec
from pilotfish.api.resource import ResourceKey
from pilotfish.runtime.pod_spec import PodSpec
from pilotfish.store.base import Store

__all__ = [
    "SecretVolumeError",
    "materialize",
    "mounts",
    "store_config_maps",
    "store_lookup",
    "volumes_dir",
]

#: The Secret ``(namespace, name)`` as loaded, or None when there is none.
SecretLookup = Callable[[str, str], SecretSpec | None]
#: A ConfigMap's ``data`` by ``(namespace, name)``, or None when there is none.
ConfigMapLookup = Callable[[str, str], dict[str, str] | None]


class SecretVolumeError(ValueError):
    """A Secret volume cannot be made (the message names the pod, Secret and key)."""


def store_lookup(store: Store) -> SecretLookup:
    """Secrets as the configuration store holds them."""

    def lookup(namespace: str, name: str) -> SecretSpec | None:
        found = store.get(ResourceKey("Secret", namespace, name))
        return found.spec if found is not None and isinstance(found.spec, SecretSpec) else None

    return lookup


def store_config_maps(store: Store) -> ConfigMapLookup:
    """ConfigMaps' data as the configuration store holds them."""

    def lookup(namespace: str, name: str) -> dict[str, str] | None:
        found = store.get(ResourceKey("ConfigMap", namespace, name))
        if found is None or not isinstance(found.spec, ConfigMapSpec):
            return None
        return dict(found.spec.data)

    return lookup


def volumes_dir(pod_dir: Path) -> Path:
    return pod_dir / "volumes"


def mounts(spec: PodSpec, pod_dir: Path) -> tuple[tuple[str, str], ...]:
    """(directory, mount path) of each of the pod's volumes, as ``materialize`` lays them."""
    root = volumes_dir(pod_dir)
    return tuple((str(root / str(i)), v.mount_path) for i, v in enumerate(spec.secret_volumes))


def _files(
    spec: PodSpec, index: int, lookup: SecretLookup, config_maps: ConfigMapLookup | None
) -> dict[str, bytes]:
    volume = spec.secret_volumes[index]
    data: dict[str, bytes] | None = None
    if volume.kind == "ConfigMap":
        found = config_maps(spec.namespace, volume.secret) if config_maps else None
        data = None if found is None else {k: v.encode() for k, v in found.items()}
    else:
        secret = lookup(spec.namespace, volume.secret)
        data = None if secret is None else secret.decoded()
    if data is None:
        raise SecretVolumeError(
            f"pod {spec.name}: {volume.kind} {spec.namespace}/{volume.secret} "
            f"(volume at {volume.mount_path}) does not exist"
        )
    if not volume.items:
        return data
    out: dict[str, bytes] = {}
    for key, path in volume.items:
        if key not in data:
            raise SecretVolumeError(
                f"pod {spec.name}: {volume.kind} {spec.namespace}/{volume.secret} "
                f"has no key {key!r}"
            )
        out[path] = data[key]
    return out


def materialize(
    spec: PodSpec,
    pod_dir: Path,
    lookup: SecretLookup,
    uid: int,
    gid: int,
    config_maps: ConfigMapLookup | None = None,
) -> tuple[tuple[str, str], ...]:
    """Write the pod's Secret volumes under ``pod_dir`` for ``uid``/``gid``; the
    (directory, mount path) pairs for the sandbox. Every Secret is read before
    anything is written, so a missing one leaves no partial volume behind."""
    count = len(spec.secret_volumes)
    contents = [_files(spec, i, lookup, config_maps) for i in range(count)]
    shutil.rmtree(volumes_dir(pod_dir), ignore_errors=True)  # a previous start's, maybe stale
    out = mounts(spec, pod_dir)
    for (directory, _), files in zip(out, contents, strict=True):
        target = Path(directory)
        target.mkdir(parents=True, mode=0o700)
        for rel, data in sorted(files.items()):
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        _hand_over(target, uid, gid)
    return out


def _hand_over(top: Path, uid: int, gid: int) -> None:
    """Give the volume to the app user: directories 0500, files 0400 (owner -1: unchanged)."""
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames:
            os.chown(os.path.join(dirpath, name), uid, gid)
        for name in dirnames:
            os.chown(os.path.join(dirpath, name), uid, gid)
        os.chown(dirpath, uid, gid)
        os.chmod(dirpath, 0o500)
