"""Facts about processes and the machine, read from ``/proc`` (Linux only)."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["cpu_seconds", "machine_info", "peak_rss_mib", "rss_mib", "utc_timestamp"]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def _status_mib(pid: int, field: str) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024.0  # reported in kB
    return None


def peak_rss_mib(pid: int) -> float | None:
    """Peak resident set size (``VmHWM``) of a live process in MiB, or None."""
    return _status_mib(pid, "VmHWM")


def rss_mib(pid: int) -> float | None:
    """Current resident set size (``VmRSS``) of a live process in MiB, or None."""
    return _status_mib(pid, "VmRSS")


def utc_timestamp() -> str:
    """Now, in UTC, ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_mib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit(repo: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def machine_info(repo: Path) -> dict[str, Any]:
    """What a reader needs to compare two result files: hardware and software versions."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "mem_total_mib": _mem_total_mib(),
        "pilotfish": _version("pilotfish"),
        "grpcio": _version("grpcio"),
        "protobuf": _version("protobuf"),
        "git_commit": _git_commit(repo),
    }
