"""The pod sandbox's mount plan: what is masked, what is revealed, in which order."""

from __future__ import annotations

import os
import stat

import pytest

from pilotfish.runtime.sandbox import (
    MountOp,
    SandboxError,
    SandboxSpec,
    blocked_ancestor,
    plan,
    sandbox_argv,
)

UID = 200001


def _fake_stat(modes: dict[str, tuple[int, int]]):  # type: ignore[no-untyped-def]
    """A stat function: ``modes`` maps paths to (mode bits, owner uid); others are 0755 root."""

    def fake(path: str) -> os.stat_result:
        mode, uid = modes.get(path, (0o755, 0))
        return os.stat_result((stat.S_IFDIR | mode, 0, 0, 1, uid, 0, 0, 0, 0, 0))

    return fake


def test_blocked_ancestor_is_the_shallowest_the_user_cannot_enter() -> None:
    fake = _fake_stat({"/root": (0o700, 0), "/root/.pyenv/x": (0o700, 0)})
    assert blocked_ancestor("/root/.pyenv/x/lib", UID, UID, fake) == "/root"
    assert blocked_ancestor("/usr/lib/python3", UID, UID, fake) is None
    # The owner may enter its own 0700 directory.
    own = _fake_stat({"/home/me": (0o700, UID)})
    assert blocked_ancestor("/home/me/app", UID, UID, own) is None


def test_reveals_below_a_closed_directory_are_bound_back_after_a_tmpfs() -> None:
    spec = SandboxSpec(
        uid=UID,
        gid=UID,
        masks=("/srv/mesh/.pilotfish",),
        reveals=("/root/.pyenv/versions/3.11", "/srv/mesh/.venv", "/srv/mesh"),
        mask_tmp=True,
    )
    hidden, ops = plan(spec, _fake_stat({"/root": (0o700, 0)}))
    # Only what something hides is bound back; /srv/mesh is reachable as it is.
    assert hidden == ["/root/.pyenv/versions/3.11"]
    assert ops == [
        MountOp("tmpfs", "/root", 0o755),
        MountOp("tmpfs", "/tmp", 0o1777),
        MountOp("tmpfs", "/srv/mesh/.pilotfish", 0o755),
        MountOp("bind", "/root/.pyenv/versions/3.11", source=0),
    ]


def test_a_reveal_inside_a_mask_comes_after_it() -> None:
    """The proxy's own directory inside the state directory, itself in a private /tmp."""
    state = "/tmp/ci/repo/.pilotfish"
    spec = SandboxSpec(
        uid=1337,
        gid=1337,
        masks=(state,),
        reveals=("/tmp/ci/repo/.venv", f"{state}/pods/p/proxy"),
        mask_tmp=True,
    )
    hidden, ops = plan(spec, _fake_stat({"/tmp/ci": (0o700, 0)}))
    assert hidden == ["/tmp/ci/repo/.venv", f"{state}/pods/p/proxy"]
    kinds = [(op.kind, op.path) for op in ops]
    assert kinds == [
        ("tmpfs", "/tmp"),
        ("tmpfs", "/tmp/ci"),
        ("tmpfs", state),
        ("bind", "/tmp/ci/repo/.venv"),
        ("bind", f"{state}/pods/p/proxy"),
    ]
    # Depth order: every tmpfs that covers a reveal is laid before the reveal.
    for index, op in enumerate(ops):
        if op.kind == "bind":
            covering = [o for o in ops if o.kind == "tmpfs" and op.path.startswith(o.path + "/")]
            assert all(ops.index(o) < index for o in covering)


def test_root_is_refused_and_argv_round_trips() -> None:
    with pytest.raises(SandboxError):
        SandboxSpec(uid=0, gid=1)
    spec = SandboxSpec(1337, 1337, ("/s",), ("/v",), True, "/w", bind_low_ports=True)
    argv = sandbox_argv("/py", spec, ["envoy", "-c", "x"])
    assert argv == [
        "/py", "-m", "pilotfish.runtime.sandbox", "--uid", "1337", "--gid", "1337",
        "--mask", "/s", "--reveal", "/v", "--mask-tmp", "--workdir", "/w", "--bind-low-ports",
        "--", "envoy", "-c", "x",
    ]  # fmt: skip


def test_a_reveal_the_user_cannot_enter_is_opened_up_entry_by_entry() -> None:
    """The project cloned into a 0700 directory: its entries are bound back one by one
    under an empty tmpfs, except the state directory inside it, which stays masked."""
    repo = "/tmp/tmp.x"
    spec = SandboxSpec(
        uid=UID, gid=UID, masks=(f"{repo}/.pilotfish",), reveals=(repo,), mask_tmp=True
    )
    entries = {repo: [".git", ".pilotfish", "README.md", "src"]}
    hidden, ops = plan(spec, _fake_stat({repo: (0o700, 0)}), lambda p: entries[p])
    assert hidden == [f"{repo}/.git", f"{repo}/README.md", f"{repo}/src"]
    assert [(op.kind, op.path) for op in ops] == [
        ("tmpfs", "/tmp"),
        ("tmpfs", repo),
        ("tmpfs", f"{repo}/.pilotfish"),
        ("bind", f"{repo}/.git"),
        ("bind", f"{repo}/README.md"),
        ("bind", f"{repo}/src"),
    ]


def _host(existing: set[str], links: dict[str, str], entries: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    """stat/lstat/listdir/readlink over a made-up tree: ``existing`` directories,
    ``links`` symbolic links (path -> target)."""

    def fake_stat(path: str) -> os.stat_result:
        if path not in existing and path not in links:
            raise FileNotFoundError(path)
        return os.stat_result((stat.S_IFDIR | 0o755, 0, 0, 1, 0, 0, 0, 0, 0, 0))

    def fake_lstat(path: str) -> os.stat_result:
        if path in links:
            return os.stat_result((stat.S_IFLNK | 0o777, 0, 0, 1, 0, 0, 0, 0, 0, 0))
        return fake_stat(path)

    return fake_stat, lambda p: entries[p], fake_lstat, lambda p: links[p]


def test_a_volume_onto_an_existing_directory_is_one_bind() -> None:
    spec = SandboxSpec(
        UID, UID, masks=("/srv/state",), volumes=(("/srv/state/pods/p/v/0", "/opt/certs"),)
    )
    fake_stat, listdir, lstat, readlink = _host({"/", "/opt", "/opt/certs", "/srv/state"}, {}, {})
    opened, ops = plan(spec, fake_stat, listdir, lstat, readlink)
    # The source is opened before the state directory is masked, then bound on.
    assert opened == ["/srv/state/pods/p/v/0"]
    assert ops == [
        MountOp("tmpfs", "/srv/state", 0o755),
        MountOp("bind", "/opt/certs", source=0),
    ]


def test_a_missing_mount_path_is_made_in_a_private_copy_of_its_parent() -> None:
    spec = SandboxSpec(
        UID,
        UID,
        masks=("/srv/state",),
        reveals=("/usr/lib/python3",),
        volumes=(("/srv/state/v/0", "/etc/secret-volume"),),
    )
    tree = {"/", "/etc", "/etc/ssl", "/etc/hosts", "/srv/state", "/usr/lib/python3"}
    fake_stat, listdir, lstat, readlink = _host(
        tree, {"/etc/mtab": "../proc/self/mounts"}, {"/etc": ["hosts", "mtab", "ssl"]}
    )
    opened, ops = plan(spec, fake_stat, listdir, lstat, readlink)
    assert opened == ["/etc/hosts", "/etc/ssl", "/srv/state/v/0"]
    assert ops == [
        MountOp("tmpfs", "/etc", 0o755),
        MountOp("tmpfs", "/srv/state", 0o755),
        MountOp("bind", "/etc/hosts", source=0),
        MountOp("symlink", "/etc/mtab", link="../proc/self/mounts"),
        MountOp("bind", "/etc/secret-volume", source=2),
        MountOp("bind", "/etc/ssl", source=1),
    ]


def test_a_mount_path_inside_a_mask_needs_no_copy() -> None:
    spec = SandboxSpec(UID, UID, mask_tmp=True, volumes=(("/srv/v", "/tmp/certs/x"),))
    fake_stat, listdir, lstat, readlink = _host({"/", "/tmp", "/srv/v"}, {}, {})
    opened, ops = plan(spec, fake_stat, listdir, lstat, readlink)
    assert opened == ["/srv/v"]
    assert ops == [MountOp("tmpfs", "/tmp", 0o1777), MountOp("bind", "/tmp/certs/x", source=0)]


def test_no_mount_point_is_made_directly_under_the_root() -> None:
    spec = SandboxSpec(UID, UID, volumes=(("/srv/v", "/certs"),))
    fake_stat, listdir, lstat, readlink = _host({"/", "/srv/v"}, {}, {})
    with pytest.raises(SandboxError, match="directly under /"):
        plan(spec, fake_stat, listdir, lstat, readlink)


def test_volumes_are_passed_on_the_command_line() -> None:
    spec = SandboxSpec(UID, UID, volumes=(("/a/b", "/etc/c"),))
    argv = sandbox_argv("python", spec, ["app"])
    assert argv[argv.index("--volume") + 1] == "/a/b:/etc/c"
