"""``pilotfish control-plane``: serve configuration from files or etcd to proxies over xDS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import click

from pilotfish.ca import KeyFileError, TokenFileError
from pilotfish.cli.store_options import store_choice, store_options
from pilotfish.cli.timefmt import duration_seconds
from pilotfish.control_plane_ports import CA_PORT, HTTP_API_PORT, XDS_MTLS_PORT, XDS_PORT
from pilotfish.controlplane.api_token import DEFAULT_TOKEN_FILE, ApiTokenError
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.model.mesh_config import (
    DEFAULT_MESH_CONFIG,
    MeshConfig,
    MeshConfigError,
    load_mesh_config,
    with_overrides,
)
from pilotfish.store import StoreError

__all__ = ["control_plane"]


async def _serve(settings: ControlPlaneSettings) -> None:
    cp = ControlPlane(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await cp.start()
    except (KeyFileError, TokenFileError, ApiTokenError, StoreError, OSError) as exc:
        with contextlib.suppress(Exception):
            await cp.close()
        raise click.ClickException(str(exc)) from exc
    secure = (
        f", xDS over mTLS {settings.bind}:{cp.xds_mtls_port}, CA over TLS "
        f"{settings.bind}:{cp.secure_port}"
        if cp.ca is not None
        else ""
    )
    token = "given by --api-token" if settings.api_token else f"in {settings.api_token_file}"
    click.echo(
        f"pilotfish control plane: xDS {settings.bind}:{cp.xds_port}{secure}, "
        f"HTTP http://{settings.bind}:{cp.http_port} (API token {token})",
        err=True,
    )
    try:
        await stop.wait()
    finally:
        await cp.close()


def _mesh_with_flags(mesh: MeshConfig | None, trust_domain: str) -> MeshConfig:
    """The mesh config in force: the file's (or Istio's defaults), where a
    ``--trust-domain`` given on the command line wins over its trustDomain."""
    source = click.get_current_context().get_parameter_source("trust_domain")
    explicit = source is click.core.ParameterSource.COMMANDLINE or mesh is None
    return with_overrides(
        mesh or DEFAULT_MESH_CONFIG, trust_domain=trust_domain if explicit else None
    )


def _mesh_config(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> MeshConfig | None:
    """Load ``--mesh-config``; every problem is reported as ``file:line: field: reason``."""
    if value is None:
        return None
    try:
        return load_mesh_config(value)
    except MeshConfigError as exc:
        raise click.BadParameter("\n" + str(exc)) from exc


#: The ``--mesh-config`` option, shared with ``pilotfish up``.
mesh_config_option = click.option(
    "--mesh-config",
    "mesh_config",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    callback=_mesh_config,
    help="Mesh config file (Istio meshConfig: rootNamespace, trustDomain, "
    "defaultHttpRetryPolicy, outboundTrafficPolicy, accessLogFile, enableAutoMtls). "
    "Read at start; --trust-domain given explicitly wins over its trustDomain.",
)


@click.command("control-plane")
@click.option(
    "--config",
    "config_paths",
    multiple=True,
    type=click.Path(exists=True),
    help="Directory or file of configuration (repeatable). Watched for changes. "
    "Required unless --config-store names etcd.",
)
@store_options
@click.option("--xds-port", type=int, default=XDS_PORT, show_default=True, help="xDS (gRPC) port.")
@click.option(
    "--http-port", type=int, default=HTTP_API_PORT, show_default=True, help="HTTP API port."
)
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--ca-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Run the mesh CA, keeping its root here (created 0700), on --secure-port, and "
    "serve xDS over mTLS on --xds-mtls-port. The plain --xds-port is for "
    "loopback/development only.",
)
@click.option("--trust-domain", default="cluster.local", show_default=True)
@click.option(
    "--secure-port",
    type=int,
    default=CA_PORT,
    show_default=True,
    help="The CA's port: TLS, authenticated by pod tokens (with --ca-dir).",
)
@click.option(
    "--xds-mtls-port",
    type=int,
    default=XDS_MTLS_PORT,
    show_default=True,
    help="xDS over mTLS: proxies present mesh certificates (with --ca-dir).",
)
@click.option(
    "--cert-ttl",
    default="24h",
    show_default=True,
    callback=duration_seconds,
    help="Lifetime of workload certificates, e.g. 24h, 90m, 90s.",
)
@click.option(
    "--root-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Use this CA certificate (with --root-key) instead of the root in --ca-dir.",
)
@click.option(
    "--root-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Key of --root-cert (must not be readable by group or others).",
)
@click.option(
    "--ca-tokens",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="YAML/JSON list of {token, namespace, serviceAccount} the CA accepts.",
)
@click.option(
    "--api-token",
    envvar="PILOTFISH_API_TOKEN",
    default=None,
    help="The token the HTTP API requires ('Authorization: Bearer <token>'); "
    "wins over --api-token-file (env PILOTFISH_API_TOKEN).",
)
@click.option(
    "--api-token-file",
    type=click.Path(dir_okay=False),
    default=DEFAULT_TOKEN_FILE,
    show_default=True,
    help="File holding the HTTP API's token: created 0600 (directory 0700) at first "
    "start, reused after. Relative to the working directory, where the CLI looks by default.",
)
@click.option(
    "--insecure-plaintext-secrets",
    is_flag=True,
    default=False,
    help="DEVELOPMENT ONLY: send Gateway/DestinationRule credentialName Secrets on the "
    "plain --xds-port to whatever namespace a node claims. Without it only proxies on the "
    "mTLS port get them, for their certificate's namespace.",
)
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
@mesh_config_option
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
    ca_dir: str | None,
    trust_domain: str,
    secure_port: int,
    xds_mtls_port: int,
    cert_ttl: int,
    root_cert: str | None,
    root_key: str | None,
    ca_tokens: str | None,
    api_token: str | None,
    api_token_file: str,
    insecure_plaintext_secrets: bool,
    push_quiet_period: float,
    push_max_delay: float,
    mesh_config: MeshConfig | None,
    log_level: str,
    config_store: str | None,
    etcd_cacert: str | None,
    etcd_cert: str | None,
    etcd_key: str | None,
    etcd_prefix: str,
) -> None:
    """Serve the Istio-style configuration under --config to Envoy proxies."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if (root_cert is None) != (root_key is None):
        raise click.UsageError("--root-cert and --root-key go together")
    if ca_dir is None and (root_cert or ca_tokens):
        raise click.UsageError("--root-cert/--root-key/--ca-tokens need --ca-dir")
    store = store_choice(config_store, etcd_cacert, etcd_cert, etcd_key, etcd_prefix)
    if store.url is None and not config_paths:
        raise click.UsageError("give --config (files) or --config-store etcd://...")
    if store.url is not None and config_paths:
        raise click.UsageError(
            "--config reads files; with --config-store etcd://... put objects in the "
            "store with 'pilotfish apply'"
        )
    settings = ControlPlaneSettings(
        config_paths=config_paths,
        config_store=store.url,
        etcd_tls=store.tls,
        etcd_prefix=store.prefix,
        bind=bind,
        xds_port=xds_port,
        http_port=http_port,
        quiet_period=push_quiet_period,
        max_delay=push_max_delay,
        ca_dir=ca_dir,
        mesh=_mesh_with_flags(mesh_config, trust_domain),
        secure_port=secure_port,
        xds_mtls_port=xds_mtls_port,
        cert_ttl_seconds=cert_ttl,
        root_cert_file=root_cert,
        root_key_file=root_key,
        ca_tokens_file=ca_tokens,
        api_token=api_token or None,
        api_token_file=None if api_token else api_token_file,
        plaintext_secrets=insecure_plaintext_secrets,
        # This process is the control plane and nothing else: freezing gc is ours to do.
        freeze_gc=True,
    )
    asyncio.run(_serve(settings))
