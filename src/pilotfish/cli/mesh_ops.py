"""``pilotfish down``, ``status`` and ``logs``: find the running mesh through its state dir."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pilotfish.cli.client import connect, get_json, token_file_option
from pilotfish.cli.proxy_status import sync_state
from pilotfish.cli.tables import print_table
from pilotfish.cli.timefmt import when
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.runtime.state import process_alive, read_state, write_state
from pilotfish.runtime.teardown import clean_leftovers

__all__ = ["describe", "down", "logs", "status"]

_STATE_DIR = click.option("--state-dir", default=".pilotfish", show_default=True)


@click.command("down")
@_STATE_DIR
@click.option("--timeout", type=float, default=60.0, show_default=True)
def down(state_dir: str, timeout: float) -> None:
    """Stop the mesh and remove everything it created on the host."""
    console = Console(stderr=True)
    path = Path(state_dir).resolve()
    settings = RuntimeSettings(state_dir=path)
    state = read_state(settings.state_file)
    if state is not None and process_alive(state.pid) and state.pid != os.getpid():
        console.print(f"stopping the mesh (pid {state.pid})...")
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(state.pid):
            console.print("[yellow]the supervisor did not stop in time; killing it[/]")
            os.kill(state.pid, signal.SIGKILL)
        state = read_state(settings.state_file) or state
    if state is not None and state.bridge:
        settings = RuntimeSettings(state_dir=path, bridge=state.bridge)
    removed = clean_leftovers(settings, state)
    if removed:
        console.print(f"removed leftovers: {removed}")
    if state is not None:
        state.phase = "stopped"
        state.pods = {}
        state.processes = {}
        write_state(settings.state_file, state)
    console.print("mesh is down")


_XDS_TYPES = ("CDS", "LDS", "EDS", "RDS")


def _sidecar_sync(
    syncz: list[dict[str, Any]],
    pod: str,
    namespace: str,
    types: tuple[str, ...] = _XDS_TYPES,
) -> str:
    row = next((r for r in syncz if r.get("proxy_id") == f"{pod}.{namespace}"), None)
    if row is None:
        return "NOT CONNECTED"
    states = {sync_state(row["types"].get(t)) for t in types}
    if states == {"SYNCED"}:
        return "SYNCED"
    return "/".join(sorted(states))


@click.command("status")
@_STATE_DIR
@token_file_option()
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def status(state_dir: str, token_file: str | None, output: str) -> None:
    """Pods of the running mesh: workload, IP, readiness, restarts, sidecar sync."""
    settings = RuntimeSettings(state_dir=Path(state_dir).resolve())
    state = read_state(settings.state_file)
    if state is None or not process_alive(state.pid) or state.phase == "stopped":
        raise click.ClickException(f"no mesh is running from {settings.state_dir}")
    api = connect(state.control_plane, token_file, settings.state_dir)
    pods = get_json(api, "/runtime/pods")
    syncz = get_json(api, "/debug/syncz")
    for pod in pods["pods"]:
        # An ambient pod has no proxy of its own (its node proxy's row shows the
        # sync), nor has a pod out of the mesh (``none``).
        proxyless = pod.get("dataplane") in ("ambient", "none")
        pod["sidecar_sync"] = (
            "-" if proxyless else _sidecar_sync(syncz, pod["name"], pod["namespace"])
        )
    if output == "json":
        click.echo(json.dumps(pods, indent=2, sort_keys=True))
        return
    table = Table(box=None, header_style="bold")
    columns = (
        "NAME",
        "WORKLOAD",
        "NAMESPACE",
        "IP",
        "READY",
        "PHASE",
        "RESTARTS",
        "DATAPLANE",
        "SIDECAR",
        "IDENTITY",
        "CERT EXPIRES",
    )
    for col in columns:
        table.add_column(col)
    for pod in pods["pods"]:
        ready = pod.get("ready")
        table.add_row(
            pod["name"],
            pod.get("workload", ""),
            pod["namespace"],
            pod.get("ip", ""),
            "-" if ready is None else ("yes" if ready else "no"),
            pod.get("phase", ""),
            str(pod.get("restarts", 0)),
            pod.get("dataplane", "sidecar"),
            pod["sidecar_sync"],
            pod.get("identity") or "-",
            _expiry(pod.get("cert_expires")),
        )
    console = Console()
    console.print(f"mesh {pods['phase']} ({pods['mode']} mode)", highlight=False, soft_wrap=True)
    print_table(console, table)


def _expiry(not_after: float | None) -> str:
    if not not_after:
        return "-"
    left = not_after - time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(not_after))
    if left <= 0:
        return f"{stamp} (expired)"
    hours, rest = divmod(int(left), 3600)
    return f"{stamp} ({hours}h{rest // 60:02d}m)"


# Fields of a pod's status that are Unix times.
_TIME_FIELDS = frozenset({"started_at", "cert_expires"})


@click.command("describe")
@click.argument("name")
@_STATE_DIR
@token_file_option()
def describe(name: str, state_dir: str, token_file: str | None) -> None:
    """Everything about one pod (or gateway): status, identity, certificate, sync."""
    settings = RuntimeSettings(state_dir=Path(state_dir).resolve())
    state = read_state(settings.state_file)
    if state is None or not process_alive(state.pid) or state.phase == "stopped":
        raise click.ClickException(f"no mesh is running from {settings.state_dir}")
    api = connect(state.control_plane, token_file, settings.state_dir)
    pods = get_json(api, "/runtime/pods")["pods"]
    pod = next((p for p in pods if p["name"] == name), None)
    if pod is None:
        raise click.ClickException(f"no pod named {name!r}")
    syncz = get_json(api, "/debug/syncz")
    pod["sidecar_sync"] = _sidecar_sync(syncz, pod["name"], pod["namespace"])
    width = max(len(k) for k in pod)
    for key in sorted(pod):
        value = pod[key]
        if key in _TIME_FIELDS:
            value = when(value)
        click.echo(f"{key.replace('_', ' '):<{width}}  {value}")


@click.command("logs")
@click.argument("name")
@_STATE_DIR
@click.option("--sidecar", is_flag=True, help="The sidecar's log instead of the app's.")
@click.option("--tail", type=int, default=0, help="Only the last N lines.")
def logs(name: str, state_dir: str, sidecar: bool, tail: int) -> None:
    """Logs of a pod, or of every pod of a workload (--sidecar: the agent's log,
    then its Envoy's output: access logs and Envoy's own messages)."""
    settings = RuntimeSettings(state_dir=Path(state_dir).resolve())
    log_dir = settings.log_dir
    suffix = ".sidecar.log" if sidecar else ".log"
    exact = log_dir / f"{name}{suffix}"
    files = [exact] if exact.exists() else sorted(log_dir.glob(f"{name}-[0-9]*{suffix}"))
    if not sidecar:
        files = [f for f in files if not f.name.endswith(".sidecar.log")]
    if not files:
        raise click.ClickException(f"no logs for {name!r} in {log_dir}")
    for path in files:
        lines = path.read_text(errors="replace").splitlines()
        if sidecar:
            # The agent copies Envoy's stdout (where access logs go) to envoy.log.
            pod = path.name.removesuffix(suffix)
            envoy_log = settings.work_dir / pod / "proxy" / "envoy.log"
            if envoy_log.exists():
                lines += envoy_log.read_text(errors="replace").splitlines()
        if tail:
            lines = lines[-tail:]
        prefix = f"[{path.name.removesuffix(suffix)}] " if len(files) > 1 else ""
        for line in lines:
            click.echo(prefix + line)
