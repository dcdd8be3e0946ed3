"""``pilotfish dashboard-server`` (the addon process) and ``pilotfish dashboard``."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from pilotfish.controlplane.api_token import TOKEN_FILE_NAME
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.runtime.state import process_alive, read_state

__all__ = ["dashboard", "dashboard_server"]

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 20001
DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"
DEFAULT_TRACING = "http://127.0.0.1:9411"
DEFAULT_CONTROL_PLANE = "http://127.0.0.1:15014"


@click.command("dashboard-server")
@click.option("--address", default=DEFAULT_ADDRESS, show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--prometheus", default=DEFAULT_PROMETHEUS, show_default=True)
@click.option("--tracing", default=DEFAULT_TRACING, show_default=True)
@click.option("--control-plane", "control_plane", default=DEFAULT_CONTROL_PLANE, show_default=True)
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None)
def dashboard_server(
    address: str,
    port: int,
    prometheus: str,
    tracing: str,
    control_plane: str,
    token_file: Path | None,
) -> None:
    """Serve the web dashboard (graph, workloads, config, traces)."""
    from pilotfish.dashboard.backends import Backends
    from pilotfish.dashboard.server import run

    click.echo(f"dashboard on http://{address}:{port}/", err=True)
    run(address, port, Backends(prometheus, tracing, control_plane, token_file))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@click.command("dashboard")
@click.option("--state-dir", default=".pilotfish", show_default=True)
@click.option("--print-url", is_flag=True, help="Only print the URL; do not start anything.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--timeout", type=float, default=20.0, show_default=True)
def dashboard(state_dir: str, print_url: bool, port: int, timeout: float) -> None:
    """Print the URL of the running mesh's dashboard, starting the dashboard if needed."""
    settings = RuntimeSettings(state_dir=Path(state_dir).resolve())
    state = read_state(settings.state_file)
    running = state is not None and process_alive(state.pid) and state.phase != "stopped"
    # The mesh's own dashboard addon, when it runs one; else the given port.
    url = (state.addons.get("dashboard") if state is not None and running else None) or (
        f"http://{DEFAULT_ADDRESS}:{port}/"
    )
    if print_url:
        click.echo(url)
        return
    if state is None or not running:
        raise click.ClickException(f"no mesh is running from {settings.state_dir}")
    if not _answers(url):
        log = settings.log_dir / "dashboard.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "pilotfish.cli.main", "dashboard-server",
            "--port", str(port), "--control-plane", state.control_plane,
            "--token-file", str(settings.state_dir / TOKEN_FILE_NAME),
        ]  # fmt: skip
        with log.open("ab") as out:
            # Detached: the dashboard outlives this command, like the mesh does.
            subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not _answers(url):
            if time.monotonic() > deadline:
                raise click.ClickException(f"the dashboard did not start; see {log}")
            time.sleep(0.2)
    click.echo(url)
