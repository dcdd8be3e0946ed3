"""``pilotfish control-plane``: serve configuration from files to proxies over xDS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import click

from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings

__all__ = ["control_plane"]


async def _serve(settings: ControlPlaneSettings) -> None:
    cp = ControlPlane(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await cp.start()
    click.echo(
        f"pilotfish control plane: xDS {settings.bind}:{cp.xds_port}, "
        f"HTTP http://{settings.bind}:{cp.http_port}",
        err=True,
    )
    try:
        await stop.wait()
    finally:
        await cp.close()


@click.command("control-plane")
@click.option(
    "--config",
    "config_paths",
    multiple=True,
    required=True,
    type=click.Path(exists=True),
    help="Directory or file of configuration (repeatable). Watched for changes.",
)
@click.option("--xds-port", type=int, default=15010, show_default=True, help="xDS (gRPC) port.")
@click.option("--http-port", type=int, default=15014, show_default=True, help="HTTP API port.")
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--push-quiet-period",
    type=float,
    default=0.1,
    show_default=True,
    help="Seconds without changes before a push.",
)
@click.option(
    "--push-max-delay",
    type=float,
    default=1.0,
    show_default=True,
    help="Longest seconds a change waits for a push.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def control_plane(
    config_paths: tuple[str, ...],
    xds_port: int,
    http_port: int,
    bind: str,
    push_quiet_period: float,
    push_max_delay: float,
    log_level: str,
) -> None:
    """Serve the Istio-style configuration under --config to Envoy proxies."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = ControlPlaneSettings(
        config_paths=config_paths,
        bind=bind,
        xds_port=xds_port,
        http_port=http_port,
        quiet_period=push_quiet_period,
        max_delay=push_max_delay,
    )
    asyncio.run(_serve(settings))
