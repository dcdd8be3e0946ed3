"""Writing several configuration files as one change, for ``FileStore.apply_all``.

Theory of operation: POSIX renames one file atomically, never several. So a
batch is planned completely first (every target and its bytes, proven to load
back: ``Plan``), then each file is replaced atomically in turn, remembering
what it held. If a replacement fails, the files already replaced get their
old bytes back and files that did not exist are removed, then the failure is
raised: a refused or failed batch leaves the disk as it was. What cannot be
covered is the process dying between two replacements (kill -9, power loss):
the files replaced so far stay, each one whole. If restoring itself fails,
the error names the files that still hold the new objects.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from pilotfish.api.loader import LoadResult
from pilotfish.store._render import atomic_write, remove_file
from pilotfish.store.base import StoreError

__all__ = ["Plan", "write_all"]


@dataclass(frozen=True, slots=True)
class Plan:
    """One file of a batch: its path, its new bytes and what they load as."""

    target: str
    data: bytes
    loaded: LoadResult
    private: bool = False


def write_all(plans: Sequence[Plan]) -> list[os.stat_result]:
    """Replace every ``plan.target`` with ``plan.data``; all, or (on failure) none.

    Returns each written file's ``stat``, in order. Raises ``StoreError``
    after undoing what was written when any file cannot be written.
    """
    done: list[tuple[Plan, bytes | None]] = []
    stats: list[os.stat_result] = []
    for plan in plans:
        try:
            previous = _read_if_present(plan.target)
            atomic_write(plan.target, plan.data, private=plan.private)
            done.append((plan, previous))
            stats.append(os.stat(plan.target))
        except OSError as exc:
            left = _undo(done)
            reason = f"cannot write {plan.target}: {exc.strerror or exc}"
            if left:
                reason += "; could not restore " + ", ".join(left) + " (they hold the new objects)"
            else:
                reason += "; nothing was written"
            raise StoreError(reason) from exc
    return stats


def _read_if_present(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _undo(done: Sequence[tuple[Plan, bytes | None]]) -> list[str]:
    """Put back what each written file held, newest first; the paths that failed."""
    failed: list[str] = []
    for plan, previous in reversed(done):
        try:
            if previous is None:
                with contextlib.suppress(FileNotFoundError):
                    remove_file(plan.target)
            else:
                atomic_write(plan.target, previous, private=plan.private)
        except OSError:
            failed.append(plan.target)
    return failed
