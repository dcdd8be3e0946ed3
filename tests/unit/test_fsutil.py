"""``fsutil.atomic_write``: all or nothing, with the asked mode and owner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pilotfish import fsutil
from pilotfish.fsutil import atomic_write, atomic_write_text


def test_writes_new_file_with_default_mode_and_no_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    assert atomic_write_text(target, "{}\n")
    assert target.read_text() == "{}\n"
    assert target.stat().st_mode & 0o777 == fsutil.DEFAULT_MODE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_replacing_keeps_the_mode_unless_one_is_given(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    os.chmod(target, 0o640)
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o640
    atomic_write(target, b"secret", mode=0o600)
    assert target.stat().st_mode & 0o777 == 0o600


def test_owner_is_set(tmp_path: Path) -> None:
    target = tmp_path / "owned"
    atomic_write(target, b"x", mode=0o600, uid=os.getuid(), gid=os.getgid())
    st = target.stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())


def test_failure_mid_write_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "users.json"
    target.write_text("old\n")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(fsutil.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="I/O error"):
        atomic_write_text(target, "new\n" * 10_000)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users.json"]


def test_failed_rename_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ca-token"
    target.write_text("old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, b"new", mode=0o600)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca-token"]


def test_exclusive_never_replaces(tmp_path: Path) -> None:
    target = tmp_path / "api-token"
    assert atomic_write(target, b"first", mode=0o600, exclusive=True)
    assert not atomic_write(target, b"second", mode=0o600, exclusive=True)
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api-token"]


def test_the_temp_file_is_never_wider_than_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        modes.append(os.fstat(fd).st_mode & 0o777)
        real_fsync(fd)

    monkeypatch.setattr(fsutil.os, "fsync", spy)
    atomic_write(tmp_path / "key.pem", b"k", mode=0o600)
    assert modes and modes[0] == 0o600
