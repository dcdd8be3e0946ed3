"""The pod sandbox: a private view of the file system, then an unprivileged user, then exec.

Run as root by the local mesh runtime, in front of every pod process (the
sidecar agent and the app) and every gateway::

    python -m pilotfish.runtime.sandbox --uid 200000 --gid 200000 \\
        --mask /srv/mesh/.pilotfish --mask-tmp \\
        --reveal /usr/lib/python3.11 --reveal /srv/mesh/.venv -- python -m app

Theory of operation:

1. ``unshare(CLONE_NEWNS)`` and make every mount private, so nothing done
   here is seen by the host or by another pod.
2. ``plan()`` turns masks and reveals into an ordered list of mounts (pure,
   unit-tested). A *mask* is a tmpfs laid over a directory: the mesh's state
   directory (CA key, tokens, Secrets, config, other pods' files) and, with
   ``--mask-tmp``, ``/tmp``. A *reveal* is a directory the process needs
   (Python, the virtualenv, the project, the pod's own directory): if a mask
   or an ancestor the target user cannot traverse (``/root`` is 0700) hides
   it, that ancestor is replaced by an empty tmpfs too and the directory is
   bind-mounted back at its own path. A reveal the user cannot enter itself
   (the project cloned into a 0700 directory) becomes an empty tmpfs with each
   of its entries bound back, masked ones excepted. Operations run from the shallowest path
   to the deepest, masks before reveals at the same depth, so a reveal inside
   a mask (the pod's own directory inside the state directory) wins over it.
   A *volume* (``--volume SRC:DST``, a pod's Secret volume) binds the
   directory ``SRC`` onto ``DST``, as a container runtime mounts a volume at
   its ``mountPath``. When ``DST`` does not exist on the host, its deepest
   existing ancestor gets the reveal treatment (an empty tmpfs with each
   entry bound back, symbolic links recreated) so the missing directories
   can be made inside the private view: the host's own tree is never
   written to.
   Each hidden reveal is opened (``O_PATH``) before any mount changes the
   view, and bound from ``/proc/self/fd/<n>``, so it is always the host's
   directory whatever is mounted over its path later.
3. Drop privileges for good: no supplementary groups, then the group, then
   the user (which clears every capability), then ``no_new_privs`` so no
   setuid binary or file capability can give any of it back. The one
   exception is ``--bind-low-ports`` (gateways, which share the host's
   network): ``CAP_NET_BIND_SERVICE`` alone is kept as an ambient capability
   so ports below 1024 can be served, as Istio's gateways do. The other is
   ``--enter-netns`` (the node proxy, which opens listeners and connections
   inside ambient pods' network namespaces): ``CAP_SYS_ADMIN`` alone is kept,
   which ``setns`` needs, and the mount namespace is a *slave* of the host's
   instead of private, so namespaces bound under ``/run/netns`` after it
   started appear in it (its own mounts still never reach the host).
4. ``execvpe`` the command: the pid stays the one the runtime recorded.

Nothing here forks; an error exits with status 126 and a one-line message on
stderr (the pod's log), before the command ever runs.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "MountOp",
    "SandboxError",
    "SandboxSpec",
    "blocked_ancestor",
    "main",
    "plan",
    "sandbox_argv",
]

_CLONE_NEWNS = 0x00020000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_KEEPCAPS = 8
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_CAP_NET_BIND_SERVICE = 10
_CAP_SYS_ADMIN = 21
_MS_SLAVE = 0x80000
_CAPABILITY_VERSION_3 = 0x20080522
_EXIT_SANDBOX_FAILED = 126


class SandboxError(RuntimeError):
    """The sandbox could not be set up; the message names the step and the path."""


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """Who a pod process runs as and what it sees.

    ``masks`` are directories replaced by an empty tmpfs; ``reveals`` are
    directories that stay visible at their own path even inside a mask or
    below a directory the user cannot traverse. ``mask_tmp`` gives the
    process a private, empty ``/tmp``.
    """

    uid: int
    gid: int
    masks: tuple[str, ...] = ()
    reveals: tuple[str, ...] = ()
    mask_tmp: bool = False
    workdir: str | None = None
    bind_low_ports: bool = False
    # Keep CAP_SYS_ADMIN and follow the host's mounts (the node proxy; see above).
    enter_netns: bool = False
    # (source directory, mount path) pairs: ``source`` bound onto ``mount path``.
    volumes: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.uid <= 0 or self.gid <= 0:
            raise SandboxError("a sandboxed process never runs as root (uid and gid must be > 0)")


@dataclass(frozen=True, slots=True)
class MountOp:
    """One step of a plan: ``tmpfs`` over ``path`` (``mode``), ``bind`` opened directory
    ``source`` (an index into the opened paths) onto ``path``, or ``symlink`` ``path``
    pointing at ``link`` (a link of the host's, recreated inside a tmpfs)."""

    kind: Literal["tmpfs", "bind", "symlink"]
    path: str
    mode: int = 0o755
    source: int = -1
    link: str = ""


StatFn = Callable[[str], os.stat_result]
ListFn = Callable[[str], list[str]]
LinkFn = Callable[[str], str]


def _ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``["/a", "/a/b"]`` (the root and the path itself excluded)."""
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def _can_traverse(st: os.stat_result, uid: int, gid: int) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def blocked_ancestor(path: str, uid: int, gid: int, stat_fn: StatFn = os.stat) -> str | None:
    """The shallowest ancestor of ``path`` that ``uid``/``gid`` cannot enter, or None."""
    for ancestor in _ancestors(path):
        try:
            st = stat_fn(ancestor)
        except OSError:
            return None
        if not _can_traverse(st, uid, gid):
            return ancestor
    return None


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _depth(path: str) -> int:
    return len([p for p in path.split("/") if p])


def _entries(path: str) -> list[str]:
    return sorted(os.listdir(path))


def _open_up(
    spec: SandboxSpec, masks: dict[str, int], stat_fn: StatFn, list_fn: ListFn
) -> list[str]:
    """The reveals, with each directory the user may not enter itself (a 0700 clone of
    the project, say) replaced by its entries under an empty tmpfs of the same path:
    bound back one by one, they are reachable, and masked entries stay masked."""
    out: list[str] = []
    user_masks = tuple(masks)
    for reveal in spec.reveals:
        try:
            st = stat_fn(reveal)
        except OSError:
            out.append(reveal)  # opening it fails later, with its name
            continue
        if not stat.S_ISDIR(st.st_mode) or _can_traverse(st, spec.uid, spec.gid):
            out.append(reveal)
            continue
        masks.setdefault(reveal, 0o755)
        # Masks inside the reveal (the state directory in the project) stay masked.
        inner = [m for m in user_masks if _under(m, reveal) and m != reveal]
        for name in list_fn(reveal):
            child = reveal.rstrip("/") + "/" + name
            if not any(_under(child, m) for m in inner):
                out.append(child)
    return out


def _existing_ancestor(path: str, stat_fn: StatFn) -> str | None:
    """The deepest existing ancestor of ``path`` when ``path`` itself is missing, else None."""
    try:
        stat_fn(path)
        return None
    except OSError:
        pass
    for ancestor in reversed(["/", *_ancestors(path)]):
        try:
            stat_fn(ancestor)
            return ancestor
        except OSError:
            continue
    return "/"


@dataclass(frozen=True, slots=True)
class _HostFs:
    stat: StatFn
    lstat: StatFn
    listdir: ListFn
    readlink: LinkFn


def _make_room(
    spec: SandboxSpec, masks: dict[str, int], reveals: list[str], fs: _HostFs
) -> list[MountOp]:
    """For each volume whose mount path is missing: a tmpfs over its deepest existing
    ancestor with that ancestor's entries revealed (added to ``reveals``) and its
    symbolic links recreated (the returned ops), so the path can be made privately."""
    links: list[MountOp] = []
    for _, target in spec.volumes:
        parent = _existing_ancestor(target, fs.stat)
        if parent is None or any(_under(parent, m) for m in masks):
            continue  # it exists, or it lies in a tmpfs where it can simply be made
        if parent == "/":
            raise SandboxError(f"volume {target}: cannot make a mount point directly under /")
        masks.setdefault(parent, 0o755)
        for name in fs.listdir(parent):
            child = parent.rstrip("/") + "/" + name
            if stat.S_ISLNK(fs.lstat(child).st_mode):
                links.append(MountOp("symlink", child, link=fs.readlink(child)))
            else:
                reveals.append(child)
    return links


def plan(
    spec: SandboxSpec,
    stat_fn: StatFn = os.stat,
    list_fn: ListFn = _entries,
    lstat_fn: StatFn = os.lstat,
    readlink_fn: LinkFn = os.readlink,
) -> tuple[list[str], list[MountOp]]:
    """(paths to open before mounting, mount operations in order) for ``spec``.

    The paths are the hidden reveals, then each volume's source (in order).
    Paths must be absolute and normalised. A reveal that nothing hides is left
    alone (no mount at all).
    """
    masks: dict[str, int] = {m: 0o755 for m in spec.masks}
    if spec.mask_tmp:
        masks["/tmp"] = 0o1777
    reveals = _open_up(spec, masks, stat_fn, list_fn)
    links = _make_room(spec, masks, reveals, _HostFs(stat_fn, lstat_fn, list_fn, readlink_fn))
    for reveal in reveals:
        blocked = blocked_ancestor(reveal, spec.uid, spec.gid, stat_fn)
        if blocked is not None:
            masks.setdefault(blocked, 0o755)
    hidden = [r for r in dict.fromkeys(reveals) if any(_under(r, m) for m in masks)]
    ops = [MountOp("tmpfs", path, mode) for path, mode in masks.items()]
    ops += [MountOp("bind", path, source=index) for index, path in enumerate(hidden)]
    ops += links
    ops += [
        MountOp("bind", target, source=len(hidden) + i)
        for i, (_, target) in enumerate(spec.volumes)
    ]
    # Shallow first; at one depth masks go first so a reveal of the same path wins.
    ops.sort(key=lambda op: (_depth(op.path), op.kind != "tmpfs", op.path))
    return [*hidden, *(source for source, _ in spec.volumes)], ops


def sandbox_argv(python: str, spec: SandboxSpec, command: Sequence[str]) -> list[str]:
    """The launcher's command line running ``command`` inside ``spec``."""
    argv = [python, "-m", "pilotfish.runtime.sandbox", "--uid", str(spec.uid)]
    argv += ["--gid", str(spec.gid)]
    for mask in spec.masks:
        argv += ["--mask", mask]
    for reveal in spec.reveals:
        argv += ["--reveal", reveal]
    if spec.mask_tmp:
        argv.append("--mask-tmp")
    if spec.workdir:
        argv += ["--workdir", spec.workdir]
    if spec.bind_low_ports:
        argv.append("--bind-low-ports")
    if spec.enter_netns:
        argv.append("--enter-netns")
    for source, target in spec.volumes:
        argv += ["--volume", f"{source}:{target}"]
    return [*argv, "--", *command]


# -- executing a plan (root only) ---------------------------------------------------


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(err)}")


def _mount(
    libc: ctypes.CDLL,
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None = None,
) -> None:
    def enc(value: str | None) -> bytes | None:
        return value.encode() if value is not None else None

    _check(
        libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {fstype or 'bind'} on {target}",
    )


def _make_dirs(path: str) -> None:
    """Create ``path`` and missing parents (inside a tmpfs we laid: nobody else sees it)."""
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o755, exist_ok=True)


def _make_file(path: str) -> None:
    """An empty file to bind a file onto (inside a tmpfs we laid)."""
    _make_dirs(os.path.dirname(path))
    if not os.path.exists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def _apply(libc: ctypes.CDLL, reveals: Iterable[str], ops: Sequence[MountOp]) -> None:
    fds = [os.open(path, os.O_PATH | os.O_CLOEXEC) for path in reveals]
    try:
        for op in ops:
            if op.kind == "tmpfs":
                _make_dirs(op.path)
                _mount(
                    libc,
                    "tmpfs",
                    op.path,
                    "tmpfs",
                    _MS_NOSUID | _MS_NODEV,
                    f"mode={op.mode:o},size=64m",
                )
                continue
            if op.kind == "symlink":
                os.symlink(op.link, op.path)
                continue
            fd = fds[op.source]
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                _make_dirs(op.path)
            else:
                _make_file(op.path)
            _mount(libc, f"/proc/self/fd/{fd}", op.path, None, _MS_BIND | _MS_REC)
    finally:
        for fd in fds:
            os.close(fd)


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def _keep_only(libc: ctypes.CDLL, capability: int) -> None:
    """After setuid with KEEPCAPS: ``capability`` alone, ambient so exec keeps it."""
    bit = 1 << capability
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(_CapData(bit, bit, bit), _CapData(0, 0, 0))
    _check(libc.capset(ctypes.byref(header), data), f"capset({capability})")
    _check(
        libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, capability, 0, 0),
        f"prctl(ambient {capability})",
    )


def _drop_privileges(libc: ctypes.CDLL, uid: int, gid: int, keep: int | None) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    if keep is not None:
        _check(libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(keepcaps)")
    os.setresuid(uid, uid, uid)
    if keep is not None:
        _keep_only(libc, keep)
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")
    if os.getuid() != uid or os.getgid() != gid or os.getgroups():
        raise SandboxError("privileges were not dropped")


def enter(spec: SandboxSpec) -> None:
    """Enter a private mount namespace laid out for ``spec`` and become its user."""
    if os.geteuid() != 0:
        raise SandboxError("the pod sandbox needs root to set up (run by the mesh supervisor)")
    libc = _libc()
    reveals, ops = plan(spec)
    _check(libc.unshare(_CLONE_NEWNS), "unshare(mount namespace)")
    _mount(libc, None, "/", None, _MS_REC | (_MS_SLAVE if spec.enter_netns else _MS_PRIVATE))
    _apply(libc, reveals, ops)
    keep = None
    if spec.enter_netns:
        keep = _CAP_SYS_ADMIN
    elif spec.bind_low_ports:
        keep = _CAP_NET_BIND_SERVICE
    _drop_privileges(libc, spec.uid, spec.gid, keep)
    if spec.workdir:
        try:
            os.chdir(spec.workdir)
        except OSError as exc:
            # A working directory the user may not enter: run from / rather than fail.
            print(
                f"pilotfish sandbox: cannot enter {spec.workdir} ({exc.strerror}); running in /",
                file=sys.stderr,
            )
            os.chdir("/")


def _parse(argv: Sequence[str]) -> tuple[SandboxSpec, list[str]]:
    parser = argparse.ArgumentParser(prog="pilotfish-sandbox", add_help=True)
    parser.add_argument("--uid", type=int, required=True)
    parser.add_argument("--gid", type=int, required=True)
    parser.add_argument("--mask", action="append", default=[])
    parser.add_argument("--reveal", action="append", default=[])
    parser.add_argument("--mask-tmp", action="store_true")
    parser.add_argument("--workdir")
    parser.add_argument("--bind-low-ports", action="store_true")
    parser.add_argument("--enter-netns", action="store_true")
    parser.add_argument("--volume", action="append", default=[], metavar="SRC:DST")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("a command is required after --")

    def norm(paths: Iterable[str]) -> tuple[str, ...]:
        return tuple(os.path.realpath(p) for p in paths)

    spec = SandboxSpec(
        uid=args.uid,
        gid=args.gid,
        masks=norm(args.mask),
        reveals=norm(args.reveal),
        mask_tmp=args.mask_tmp,
        workdir=args.workdir,
        bind_low_ports=args.bind_low_ports,
        enter_netns=args.enter_netns,
        volumes=tuple(_volume(v, parser) for v in args.volume),
    )
    return spec, command


def _volume(text: str, parser: argparse.ArgumentParser) -> tuple[str, str]:
    source, sep, target = text.partition(":")
    if not sep or not source or not target.startswith("/"):
        parser.error(f"--volume {text!r}: want SOURCE:/absolute/mount/path")
    return os.path.realpath(source), os.path.normpath(target)


def main(argv: Sequence[str] | None = None) -> None:
    spec, command = _parse(sys.argv[1:] if argv is None else argv)
    try:
        enter(spec)
    except (SandboxError, OSError) as exc:
        print(f"pilotfish sandbox: {exc}", file=sys.stderr, flush=True)
        sys.exit(_EXIT_SANDBOX_FAILED)
    try:
        os.execvpe(command[0], command, dict(os.environ))
    except OSError as exc:
        print(f"pilotfish sandbox: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main()
