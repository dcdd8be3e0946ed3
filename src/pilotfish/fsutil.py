"""Atomic, durable file writes: the one way Pilotfish writes a file for the user or the mesh.

Theory of operation: the bytes go to a hidden temporary file in the target's
own directory (same filesystem, so the rename is atomic; hidden, so the
config watcher never loads it), created 0600 whatever the final mode, so a
secret is never readable by others, even briefly. The file is given its owner,
written, fsynced, given its final mode, then renamed over the target (or, for
``exclusive`` writes, hard-linked into place so an existing file is never
replaced), and the directory is fsynced so the rename survives a crash.
Readers see the old file or the new one, never a mix. On any failure the
temporary file is removed and the old file is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "remove_durably", "sync_directory"]

#: A new file's mode when the caller gives none and no file is being replaced.
DEFAULT_MODE = 0o644


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    mode: int | None = None,
    uid: int = -1,
    gid: int = -1,
    exclusive: bool = False,
) -> bool:
    """Replace ``path`` with ``data`` all at once; returns whether it was written.

    ``mode``: the file's permissions (None: those of the file being replaced,
    else 0644). ``uid``/``gid``: its owner (-1: the writer's). ``exclusive``:
    create only, never replace; returns False (and writes nothing) when
    ``path`` already exists. The directory must exist.
    """
    target = Path(path)
    directory = target.parent
    final_mode = _mode_for(target) if mode is None else mode
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            if uid != -1 or gid != -1:
                os.fchown(fh.fileno(), uid, gid)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), final_mode)
        if exclusive:
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            finally:
                tmp.unlink()
        else:
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    sync_directory(directory)
    return True


def atomic_write_text(
    path: str | os.PathLike[str],
    text: str,
    *,
    mode: int | None = None,
    uid: int = -1,
    gid: int = -1,
    exclusive: bool = False,
) -> bool:
    """``atomic_write`` of ``text`` encoded as UTF-8."""
    return atomic_write(
        path, text.encode("utf-8"), mode=mode, uid=uid, gid=gid, exclusive=exclusive
    )


def remove_durably(path: str | os.PathLike[str]) -> None:
    """Delete ``path`` and make the removal durable (raises if it does not exist)."""
    os.unlink(path)
    sync_directory(Path(path).parent)


def sync_directory(directory: str | os.PathLike[str]) -> None:
    """fsync ``directory`` so renames and removals in it survive a crash."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # some platforms cannot open directories; the data itself is synced
    try:
        os.fsync(fd)
    except OSError:
        pass  # ditto: not every filesystem syncs directories
    finally:
        os.close(fd)


def _mode_for(path: Path) -> int:
    """Keep the permissions of the file being replaced; new files get ``DEFAULT_MODE``."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return DEFAULT_MODE
