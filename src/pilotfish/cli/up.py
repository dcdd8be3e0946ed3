"""``pilotfish up``: run a whole mesh of local processes from manifests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from pilotfish.api.duration import parse_duration_ms
from pilotfish.cli.store_options import STORE_OPTIONS, store_choice
from pilotfish.cli.up_node import node_argv, node_options, node_settings
from pilotfish.control_plane_ports import CA_PORT, XDS_MTLS_PORT
from pilotfish.model.mesh_config import MeshConfigError, load_mesh_config
from pilotfish.runtime.image_map import ImageMapError, load_image_map
from pilotfish.runtime.network import transparent_supported
from pilotfish.runtime.podman import (
    CONTAINER_RUNTIMES,
    ContainerRuntime,
    container_runtime_problem,
)
from pilotfish.runtime.settings import PROFILES, RuntimeSettings
from pilotfish.runtime.settings_checks import AddonError, node_mode_problem, parse_addons
from pilotfish.runtime.state import process_alive, read_state
from pilotfish.store.etcd_target import DEFAULT_PREFIX

if TYPE_CHECKING:
    from pilotfish.runtime.mesh import MeshRuntime

__all__ = ["network_options", "resolve_mode", "run_foreground", "up"]


def resolve_mode(requested: str | None, console: Console) -> str:
    ok, reason = transparent_supported()
    if requested == "transparent" and not ok:
        raise click.ClickException(f"transparent mode is not available here: {reason}")
    if requested is None:
        if ok:
            return "transparent"
        console.print(f"[yellow]transparent mode unavailable ({reason}); using explicit mode[/]")
        return "explicit"
    return requested


async def run_foreground(
    settings: RuntimeSettings, console: Console, after_start: object = None
) -> int:
    """Start the mesh, print where it is, run until SIGINT/SIGTERM, then stop it."""
    # Imported here: the front of ``up --detach`` only checks flags and waits
    # for the supervisor, and importing the runtime costs over a second of CPU.
    from pilotfish.runtime.mesh import MeshRuntime, RuntimeStartError
    from pilotfish.runtime.node_mode import NodeRuntime

    def progress(message: str) -> None:
        console.print(f"  {message}", highlight=False)

    try:
        runtime = (NodeRuntime if settings.node_mode else MeshRuntime)(settings, progress)
    except RuntimeStartError as exc:
        console.print(f"[red]mesh failed to start:[/] {exc}", highlight=False)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        with console.status("starting the mesh..."):
            start = asyncio.create_task(runtime.start())
            waiter = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if start not in done:
                start.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await start
                return 130
            waiter.cancel()
            start.result()
        print_summary(runtime, console)
        if callable(after_start):
            result = after_start(runtime)
            if asyncio.iscoroutine(result):
                tour = asyncio.create_task(result)
                waiter = asyncio.create_task(stop.wait())
                done, _ = await asyncio.wait({tour, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if tour in done:
                    waiter.cancel()
                    if tour.result() is True:  # the tour asked to end
                        stop.set()
                else:
                    tour.cancel()
        await stop.wait()
    except RuntimeStartError as exc:
        console.print(f"[red]mesh failed to start:[/] {exc}", highlight=False)
        code = 1
    finally:
        with console.status("stopping the mesh..."):
            await runtime.stop()
    return code


def print_summary(runtime: MeshRuntime, console: Console) -> None:
    s = runtime.settings
    if s.node_mode:
        console.print(
            f"[green]node {s.node_name} ready[/]: {len(runtime.pods)} pods; control planes "
            f"{', '.join(s.remote_control_planes)}",
            highlight=False,
        )
        return
    console.print(
        f"[green]mesh ready[/] ({s.mode} mode, profile {s.profile}): "
        f"{len(runtime.pods)} pods; control plane http://127.0.0.1:{s.control_plane_port} "
        f"(API token in {s.api_token_file})",
        highlight=False,
    )
    if runtime.gateways:
        console.print(f"ingress: http://127.0.0.1:{s.ingress_port}/", highlight=False)


# Address-range and port options of ``up``.
_NETWORK_OPTIONS = [
    click.option(
        "--xds-port",
        type=int,
        default=15010,
        show_default=True,
        help="xDS port of the control plane.",
    ),
    click.option(
        "--bridge",
        default="pf0",
        show_default=True,
        help="Name of the mesh bridge (transparent mode).",
    ),
    click.option(
        "--pod-cidr",
        default="198.18.0.0/16",
        show_default=True,
        help="Pod addresses (transparent mode); the first one is the bridge's.",
    ),
    click.option(
        "--service-cidr",
        default="198.19.0.0/16",
        show_default=True,
        help="Service virtual IPs.",
    ),
    click.option(
        "--secure-port",
        type=int,
        default=CA_PORT,
        show_default=True,
        help="The mesh CA (TLS; pods authenticate with their token).",
    ),
    click.option(
        "--xds-mtls-port",
        type=int,
        default=XDS_MTLS_PORT,
        show_default=True,
        help="xDS over mTLS (proxies present their workload certificate).",
    ),
    click.option(
        "--trust-domain",
        default="cluster.local",
        show_default=True,
        help="SPIFFE trust domain of workload identities.",
    ),
    click.option(
        "--cert-ttl",
        default="24h",
        show_default=True,
        help="Lifetime of workload certificates (rotated at about half of it).",
    ),
    click.option(
        "--addons",
        default=None,
        help="Addons to run, comma-separated: etcd (a local etcd holding the "
        "configuration), prometheus, tracing, dashboard (default: the last three with "
        "--profile demo, none otherwise).",
    ),
    click.option("--etcd-port", type=int, default=2379, show_default=True),
    *STORE_OPTIONS,
    click.option("--prometheus-port", type=int, default=9090, show_default=True),
    click.option("--tracing-port", type=int, default=9411, show_default=True),
    click.option("--dashboard-port", type=int, default=20001, show_default=True),
    click.option(
        "--mtls/--no-mtls",
        default=True,
        show_default=True,
        help="Run the mesh CA: workload identities and automatic mutual TLS.",
    ),
    click.option(
        "--xds-protocol",
        type=click.Choice(["delta", "sotw"]),
        default="delta",
        show_default=True,
        help="ADS variant of the proxies: incremental (delta) or State of the World.",
    ),
    click.option(
        "--dataplane",
        type=click.Choice(["sidecar", "ambient"]),
        default="sidecar",
        show_default=True,
        help="Default data plane of pods: a sidecar each, or the host's node proxy "
        "(sidecarless). The label istio.io/dataplane-mode on a Namespace or a pod "
        "template overrides it; Istio's injection labels (istio-injection=disabled, "
        'sidecar.istio.io/inject: "false") take a pod out of the mesh.',
    ),
    click.option(
        "--explicit-cidr",
        default="127.77.0.0/16",
        show_default=True,
        help="Pod addresses in explicit mode (inside 127.0.0.0/8).",
    ),
    click.option(
        "--control-plane-replicas",
        type=click.IntRange(1, 3),
        default=1,
        show_default=True,
        help="Control-plane replicas on this host (replica k's ports are replica 1's "
        "+ 100*(k-1)); proxies fail over between them.",
    ),
]


def network_options(f: Any) -> Any:
    """Add the address-range and port options of ``up``."""
    for option in reversed(_NETWORK_OPTIONS):
        f = option(f)
    return f


def _settings(
    paths: tuple[str, ...],
    profile: str,
    mode: str,
    ingress_port: int,
    state_dir: str,
    control_plane_port: int,
    net: dict[str, Any],
) -> RuntimeSettings:
    return RuntimeSettings(
        manifests=tuple(str(Path(p).resolve()) for p in paths),
        state_dir=Path(state_dir).resolve(),
        mode="transparent" if mode == "transparent" else "explicit",
        profile=profile,  # type: ignore[arg-type]
        ingress_port=ingress_port,
        control_plane_port=control_plane_port,
        xds_port=int(net.get("xds_port", 15010)),
        bridge=str(net.get("bridge", "pf0")),
        pod_cidr=str(net.get("pod_cidr", "198.18.0.0/16")),
        service_cidr=str(net.get("service_cidr", "198.19.0.0/16")),
        explicit_cidr=str(net.get("explicit_cidr", "127.77.0.0/16")),
        secure_port=int(net.get("secure_port", CA_PORT)),
        xds_mtls_port=int(net.get("xds_mtls_port", XDS_MTLS_PORT)),
        trust_domain=str(net.get("trust_domain", "cluster.local")),
        cert_ttl_seconds=parse_duration_ms(str(net.get("cert_ttl", "24h"))) // 1000,
        mtls=bool(net.get("mtls", True)),
        xds_protocol="sotw" if net.get("xds_protocol") == "sotw" else "delta",
        dataplane="ambient" if net.get("dataplane") == "ambient" else "sidecar",
        addons=_addons(net.get("addons")),
        prometheus_port=int(net.get("prometheus_port", 9090)),
        tracing_port=int(net.get("tracing_port", 9411)),
        dashboard_port=int(net.get("dashboard_port", 20001)),
        etcd_port=int(net.get("etcd_port", 2379)),
        **_store_settings(net),
        control_plane_replicas=int(net.get("control_plane_replicas", 1)),
        **node_settings(net),
    )


def _store_settings(net: dict[str, Any]) -> dict[str, Any]:
    choice = store_choice(
        net.get("config_store"),
        net.get("etcd_cacert"),
        net.get("etcd_cert"),
        net.get("etcd_key"),
        str(net.get("etcd_prefix", DEFAULT_PREFIX)),
    )
    if choice.url and "etcd" in (_addons(net.get("addons")) or ()):
        raise click.UsageError("--config-store and --addons etcd both name the store: pick one")
    return {"config_store": choice.url, "etcd_tls": choice.tls, "etcd_prefix": choice.prefix}


def _addons(text: Any) -> tuple[str, ...] | None:
    if text is None:
        return None
    try:
        return parse_addons(str(text))
    except AddonError as exc:
        raise click.BadParameter(str(exc), param_hint="--addons") from exc


@click.command("up")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--profile", type=click.Choice(PROFILES), default="default", show_default=True)
@click.option(
    "--mode",
    type=click.Choice(["transparent", "explicit"]),
    default=None,
    help="transparent (root: namespaces + iptables) or explicit; default: "
    "transparent when available.",
)
@click.option(
    "--ingress-port",
    type=int,
    default=8080,
    show_default=True,
    help="Host port of the ingress gateway (its Gateway port 8080).",
)
@click.option("--control-plane-port", type=int, default=15014, show_default=True)
@click.option("--state-dir", default=".pilotfish", show_default=True)
@click.option("--detach", is_flag=True, help="Return once every pod is ready; keep running.")
@click.option("--supervise", is_flag=True, hidden=True)
@click.option(
    "--mesh-config",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Mesh config file (Istio meshConfig); its trustDomain is used unless "
    "--trust-domain is given.",
)
@click.option(
    "--image-map",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Image -> local command map: Kubernetes workloads whose image it maps run "
    "(samples/image-maps/bookinfo.yaml runs Istio's Bookinfo).",
)
@click.option(
    "--container-runtime",
    type=click.Choice(CONTAINER_RUNTIMES),
    default="auto",
    show_default=True,
    help="Run the images of Kubernetes workloads the image map does not cover with "
    "podman (root, transparent mode; images are never pulled): auto when podman is "
    "installed, podman to require it, none to never.",
)
@network_options
@node_options
def up(
    paths: tuple[str, ...],
    profile: str,
    mode: str | None,
    ingress_port: int,
    control_plane_port: int,
    state_dir: str,
    detach: bool,
    supervise: bool,
    mesh_config: str | None,
    image_map: str | None,
    container_runtime: ContainerRuntime,
    **net: Any,
) -> None:
    """Run the Workloads, Services and routing under PATH... as a local mesh."""
    console = Console(stderr=True)
    resolved = resolve_mode(mode, console)
    settings = _settings(paths, profile, resolved, ingress_port, state_dir, control_plane_port, net)
    if mesh_config is not None:
        try:
            mesh = load_mesh_config(mesh_config)
        except MeshConfigError as exc:
            raise click.ClickException(f"invalid mesh config:\n{exc}") from exc
        source = click.get_current_context().get_parameter_source("trust_domain")
        explicit = source is click.core.ParameterSource.COMMANDLINE
        settings = dataclasses.replace(
            settings,
            mesh_config_file=str(Path(mesh_config).resolve()),
            trust_domain=settings.trust_domain if explicit else mesh.trust_domain,
        )
    if image_map is not None:
        try:
            load_image_map(image_map)  # refuse a bad map before anything starts
        except ImageMapError as exc:
            raise click.BadParameter(str(exc), param_hint="--image-map") from exc
        settings = dataclasses.replace(settings, image_map_file=str(Path(image_map).resolve()))
    settings = dataclasses.replace(settings, container_runtime=container_runtime)
    if (problem := node_mode_problem(settings)) is not None:
        raise click.UsageError(problem)
    if container_runtime == "podman":
        problem = container_runtime_problem(
            "podman", settings.mode, root=os.geteuid() == 0, podman=shutil.which("podman")
        )
        if problem is not None:
            raise click.BadParameter(problem, param_hint="--container-runtime")
    previous = read_state(settings.state_file)
    if (
        previous is not None
        and process_alive(previous.pid)
        and not supervise
        and previous.phase in ("starting", "ready")
    ):
        raise click.ClickException(
            f"a mesh is already running from {settings.state_dir} (pid {previous.pid}); "
            "run `pilotfish down` first"
        )
    if detach:
        sys.exit(_detach(settings, paths, console))
    sys.exit(asyncio.run(run_foreground(settings, console)))


def _supervisor_argv(settings: RuntimeSettings) -> list[str]:
    """The command line of the detached supervisor: ``up --supervise`` with the same settings."""
    argv = [
        sys.executable,
        "-m",
        "pilotfish.cli.main",
        "up",
        *settings.manifests,
        "--profile",
        settings.profile,
        "--mode",
        settings.mode,
        "--ingress-port",
        str(settings.ingress_port),
        "--control-plane-port",
        str(settings.control_plane_port),
        "--state-dir",
        str(settings.state_dir),
        "--supervise",
        "--xds-port",
        str(settings.xds_port),
        "--bridge",
        settings.bridge,
        "--pod-cidr",
        settings.pod_cidr,
        "--service-cidr",
        settings.service_cidr,
        "--explicit-cidr",
        settings.explicit_cidr,
        "--secure-port",
        str(settings.secure_port),
        "--xds-mtls-port",
        str(settings.xds_mtls_port),
        "--trust-domain",
        settings.trust_domain,
        "--cert-ttl",
        f"{settings.cert_ttl_seconds}s",
        "--mtls" if settings.mtls else "--no-mtls",
        "--xds-protocol",
        settings.xds_protocol,
        "--dataplane",
        settings.dataplane,
        "--prometheus-port",
        str(settings.prometheus_port),
        "--tracing-port",
        str(settings.tracing_port),
        "--dashboard-port",
        str(settings.dashboard_port),
    ]
    if settings.control_plane_replicas != 1:
        argv += ["--control-plane-replicas", str(settings.control_plane_replicas)]
    if settings.addons is not None:
        argv += ["--addons", ",".join(settings.addons)]
    argv += ["--etcd-port", str(settings.etcd_port), "--etcd-prefix", settings.etcd_prefix]
    if settings.config_store:
        argv += ["--config-store", settings.config_store]
    tls = settings.etcd_tls
    if tls is not None:
        for flag, value in (
            ("--etcd-cacert", tls.ca_file),
            ("--etcd-cert", tls.cert_file),
            ("--etcd-key", tls.key_file),
        ):
            if value:
                argv += [flag, str(Path(value).resolve())]
    if settings.mesh_config_file:
        argv += ["--mesh-config", settings.mesh_config_file]
    if settings.image_map_file:
        argv += ["--image-map", settings.image_map_file]
    argv += ["--container-runtime", settings.container_runtime]
    return argv + node_argv(settings)


def _detach(settings: RuntimeSettings, paths: tuple[str, ...], console: Console) -> int:
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.log_dir / "supervisor.log"
    argv = _supervisor_argv(settings)
    # The state file stays: the supervisor reads it to adopt what a crashed run left
    # running (the wait below only trusts a state written by the new supervisor).
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "COLUMNS": "120"},
        )
    return _wait_ready(settings, proc, log_path, console)


def _wait_ready(
    settings: RuntimeSettings, proc: subprocess.Popen[bytes], log_path: Path, console: Console
) -> int:
    """Wait for the detached supervisor's state file to say ready (0) or failed (1)."""
    deadline = time.monotonic() + settings.ready_timeout + 30
    with console.status("starting the mesh (detached)..."):
        while time.monotonic() < deadline:
            state = read_state(settings.state_file)
            if state is not None and state.pid == proc.pid:
                if state.phase == "ready":
                    console.print(
                        f"[green]mesh ready[/] ({state.mode} mode, {len(state.pods)} pods); "
                        f"control plane {state.control_plane}"
                        + (f"; ingress {state.ingress}/" if state.ingress else ""),
                        highlight=False,
                    )
                    if state.message:  # what became of an earlier run's pods
                        console.print(state.message, highlight=False)
                    for who, why in sorted(state.not_run.items()):
                        console.print(f"[yellow]{who}[/] {why}", highlight=False)
                    for name, url in state.addons.items():
                        console.print(f"addon {name}: {url}", highlight=False)
                    console.print(
                        f"supervisor pid {proc.pid}, log {log_path}, "
                        f"API token in {settings.api_token_file}",
                        highlight=False,
                    )
                    return 0
                if state.phase == "failed":
                    console.print(f"[red]mesh failed to start:[/] {state.message}", highlight=False)
                    return 1
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                console.print(
                    "[red]the mesh supervisor exited:[/]\n" + "\n".join(tail), highlight=False
                )
                return 1
            time.sleep(0.2)
    console.print(f"[red]the mesh did not become ready in time[/]; see {log_path}")
    return 1
