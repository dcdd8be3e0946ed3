"""How the local mesh confines what it runs: the proxy user, pod users and their views.

Only the supervisor keeps root (for namespaces and iptables). Under it:

- every sidecar agent, its Envoy and every gateway run as the proxy user
  (uid/gid 1337, as Istio's ``istio-proxy``), the one id traffic capture
  exempts; apps never get it;
- every app runs as its pod's own unprivileged user (``runtime.users``), with
  no supplementary groups, no capabilities and ``no_new_privs``;
- every one of them runs in a private mount namespace (``runtime.sandbox``)
  where the mesh's state directory is an empty tmpfs and ``/tmp`` is private.
  A proxy sees only its own directory in it (``<state>/pods/<pod>/proxy``,
  0700 and owned by 1337: bootstrap, SDS socket, the pod's CA token); an app
  sees none of it. Python, the virtualenv, the project and the working
  directory stay visible, even when they sit below a directory such as
  ``/root`` that the user could not otherwise enter.

File permissions back this up on the host's own view: the state directory is
0700 root, so a process that somehow escaped its mount namespace still finds
the CA key, the tokens, Secrets and the config out of reach.

Without root there is none of this: everything runs as the invoking user
(explicit mode only), as the threat model in docs/security.md says.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pilotfish
from pilotfish.fsutil import atomic_write
from pilotfish.runtime.network.base import PROXY_GID, PROXY_UID
from pilotfish.runtime.sandbox import SandboxSpec
from pilotfish.runtime.users import PodUser

__all__ = ["Isolation", "copy_public", "runtime_reveals", "write_owned"]


def runtime_reveals(workdir: str | None = None) -> tuple[str, ...]:
    """What every sandboxed process needs to see: Python, the virtualenv, the package."""
    package_root = Path(pilotfish.__file__).resolve().parent.parent
    paths = [sys.base_prefix, sys.prefix, str(package_root)]
    if workdir:
        paths.append(workdir)
    return tuple(dict.fromkeys(os.path.realpath(p) for p in paths))


@dataclass(frozen=True, slots=True)
class Isolation:
    """The confinement of one local mesh: what is hidden and what stays visible."""

    state_dir: str
    reveals: tuple[str, ...]
    workdir: str
    proxy_uid: int = PROXY_UID
    proxy_gid: int = PROXY_GID

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> Isolation:
        workdir = os.path.realpath(os.getcwd())
        return cls(os.path.realpath(state_dir), runtime_reveals(workdir), workdir)

    def proxy(
        self, proxy_dir: Path, *, gateway: bool = False, node_proxy: bool = False
    ) -> SandboxSpec:
        """The sandbox of a sidecar agent or gateway whose own directory is ``proxy_dir``.

        A gateway shares the host's network and may serve ports below 1024 (its
        Gateway servers' ports): it keeps ``CAP_NET_BIND_SERVICE`` and nothing else.
        The node proxy opens sockets inside ambient pods' network namespaces: it
        keeps ``CAP_SYS_ADMIN`` (``setns``) and nothing else, and sees namespaces
        created after it started.
        """
        return SandboxSpec(
            uid=self.proxy_uid,
            gid=self.proxy_gid,
            masks=(self.state_dir,),
            reveals=(*self.reveals, os.path.realpath(proxy_dir)),
            mask_tmp=True,
            workdir=self.workdir,
            bind_low_ports=gateway and not node_proxy,
            enter_netns=node_proxy,
        )

    def app(self, user: PodUser, volumes: tuple[tuple[str, str], ...] = ()) -> SandboxSpec:
        """The sandbox of an app running as ``user``, with its Secret ``volumes``
        ((directory, mount path) pairs, ``runtime.secret_volumes``)."""
        return SandboxSpec(
            uid=user.uid,
            gid=user.gid,
            masks=(self.state_dir,),
            reveals=self.reveals,
            mask_tmp=True,
            workdir=self.workdir,
            volumes=volumes,
        )

    def prepare_proxy_dir(self, proxy_dir: Path) -> None:
        """Create ``proxy_dir`` as the proxy user's private directory (0700)."""
        proxy_dir.mkdir(parents=True, exist_ok=True)
        os.chown(proxy_dir, self.proxy_uid, self.proxy_gid)
        proxy_dir.chmod(0o700)

    def lock_state_dir(self) -> None:
        """The state directory itself: root only."""
        Path(self.state_dir).chmod(0o700)


def write_owned(path: Path, data: bytes, mode: int, uid: int = -1, gid: int = -1) -> None:
    """Write ``path`` atomically with ``mode`` and owner (-1: unchanged), never wider."""
    atomic_write(path, data, mode=mode, uid=uid, gid=gid)


def copy_public(source: Path, target: Path, uid: int, gid: int) -> None:
    """Copy a public file (the mesh root certificate) for the proxy user to read."""
    write_owned(target, source.read_bytes(), 0o644, uid, gid)
