"""Running host commands (``ip``, ``iptables``) with errors that say what failed.

Every change the transparent network makes to the host goes through a
``Runner`` so tests can record or replace it. The default runner is
``run_command``: ``subprocess.run(check=True, capture_output=True)`` turned
into a ``CommandError`` that carries the command line and its stderr.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from typing import Protocol

__all__ = ["CommandError", "Runner", "run_command"]


class CommandError(RuntimeError):
    """A command exited non-zero (or could not be started)."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        detail = self.stderr or "(no error output)"
        super().__init__(f"command failed (exit {returncode}): {shlex.join(self.argv)}: {detail}")


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], *, input: str | None = None) -> str:
        """Run ``argv`` (feeding ``input`` on stdin); return stdout or raise ``CommandError``."""
        ...


def run_command(argv: Sequence[str], *, input: str | None = None) -> str:
    """The default ``Runner``: run without a shell, capture output, raise on failure."""
    try:
        done = subprocess.run(
            list(argv), input=input, check=True, capture_output=True, text=True, timeout=60
        )
    except subprocess.CalledProcessError as exc:
        raise CommandError(argv, exc.returncode, exc.stderr or "") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandError(argv, -1, str(exc)) from exc
    return done.stdout
