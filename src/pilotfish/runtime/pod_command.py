"""How a pod's two processes are invoked: the sidecar agent's argv and the app's environment.

Pure functions of (``PodSpec``, ``PodEnv``, allocated ports), so every flag and
variable is unit-tested without starting anything.

- Transparent mode (network namespace + capture): the agent runs with
  ``--interception redirect``, serves health and stats on all of the pod's
  addresses, and runs Envoy with the proxy group id that capture exempts. The
  app listens on its declared container port (``PORT``).
- Explicit mode (a loopback address per pod, no capture): the sidecar binds
  the declared container ports on the pod IP and forwards to the app, which
  listens on a port allocated on 127.0.0.1 (``PORT``/``PORT_<NAME>``,
  ``--app-port <containerPort>=<allocated>``). Apps reach the mesh through
  the sidecar as an HTTP proxy (``HTTP_PROXY=http://<pod ip>:15001``).
"""

from __future__ import annotations

import compileall
import contextlib
import functools
import importlib.util
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pilotfish.agent.launch import AgentIdentity, AgentLaunch
from pilotfish.runtime.isolation import Isolation
from pilotfish.runtime.network.base import PROXY_GID, PodAddress
from pilotfish.runtime.pod_spec import PodSpec
from pilotfish.runtime.podman import Podman
from pilotfish.runtime.ports import free_port
from pilotfish.runtime.process import PROXY_DIR
from pilotfish.runtime.sandbox import sandbox_argv
from pilotfish.runtime.users import PodUser

__all__ = [
    "ADMIN_PORT",
    "AMBIENT_POD_MAIN",
    "HEALTH_PORT",
    "OUTBOUND_PORT",
    "STATS_PORT",
    "PodEnv",
    "agent_argv",
    "agent_env",
    "agent_launch",
    "allocate_app_ports",
    "app_argv",
    "app_env",
    "compile_ambient_pod",
    "port_env_name",
]

ADMIN_PORT = 15000
OUTBOUND_PORT = 15001
HEALTH_PORT = 15021
STATS_PORT = 15090
STATUS_PORT = 15020

# The readiness process's entry point (``ambient_pod_argv``): the directory holding
# the ``pilotfish`` package goes on the path by hand, since ``-S`` skips ``site``.
AMBIENT_POD_MAIN = (
    f"import sys; sys.path.append({str(Path(__file__).resolve().parents[2])!r}); "
    "from pilotfish.runtime.ambient_pod import main; sys.exit(main())"
)

# Variables of the runtime's own environment that an app inherits (a pod does
# not see the host's environment, but a local process needs a home and a locale).
_INHERITED = ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "PYTHONPATH")
# A confined process has a private /tmp and no access to the supervisor's home.
_CONFINED_INHERITED = ("LANG", "LC_ALL", "TZ", "PYTHONPATH")


@dataclass(frozen=True, slots=True)
class PodEnv:
    """Where and how one pod runs (everything that is not in the ``PodSpec``).

    ``python``'s directory goes first on the app's PATH so ``python -m ...``
    commands use the project's virtualenv. ``agent_args`` are appended to the
    agent's flags (for example ``("--concurrency", "1", "--drain-duration", "1")``);
    ``identity``: the agent's workload identity flags (None: no mesh CA).
    ``sidecar_start_timeout`` bounds the wait for the sidecar's first readiness.
    With ``isolation`` (the supervisor is root) the agent runs as the proxy user
    and the app as ``app_user``, each in its sandbox (``runtime.isolation``).
    ``podman``: how to run a spec whose app is a container image (None: no
    container runtime in this mesh).
    """

    address: PodAddress
    mode: Literal["transparent", "explicit"]
    xds_address: str
    log_dir: Path
    work_dir: Path
    python: str = sys.executable
    proxy_gid: int = PROXY_GID
    agent_args: tuple[str, ...] = ()
    xds_protocol: Literal["delta", "sotw"] | None = None  # None: the agent's default
    identity: AgentIdentity | None = None
    sidecar_start_timeout: float = 60.0
    isolation: Isolation | None = None
    app_user: PodUser | None = None
    podman: Podman | None = None
    # The app's Secret volumes: (host directory, mount path), mounted by its sandbox.
    volumes: tuple[tuple[str, str], ...] = ()
    # Sidecarless: the host's node proxy carries the pod's traffic, and the pod's
    # "sidecar" is only its readiness process (``runtime.ambient_pod``).
    ambient: bool = False
    # Out of the mesh (injection disabled): no proxy and no capture; the same
    # readiness process runs, with no node proxy listeners to wait for.
    out_of_mesh: bool = False

    @property
    def ip(self) -> str:
        return self.address.ip

    def pod_dir(self, pod: str) -> Path:
        """The pod's own directory (``pod`` is ``PodSpec.local_id``), the supervisor's:
        ``pids.json`` and the proxy's directory."""
        return Path(self.work_dir) / pod

    def proxy_dir(self, pod: str) -> Path:
        """The agent's work dir (bootstrap, SDS socket, CA token): the proxy user's own."""
        return self.pod_dir(pod) / PROXY_DIR

    def app_log(self, pod: str) -> Path:
        return Path(self.log_dir) / f"{pod}.log"

    def sidecar_log(self, pod: str) -> Path:
        return Path(self.log_dir) / f"{pod}.sidecar.log"

    def health_url(self, path: str) -> str:
        """URL of the sidecar's health server (``/healthz/ready``, ``/app-health/...``)."""
        return f"http://{self.address.ip}:{HEALTH_PORT}{path}"


def allocate_app_ports(spec: PodSpec, env: PodEnv, host: str = "127.0.0.1") -> dict[int, int]:
    """Container port -> the port the app really uses: free ports on ``host`` in explicit
    mode, the container ports themselves in transparent mode.

    Ports come from ``ports.free_port``: outside the kernel's ephemeral range, so no
    outgoing connection takes one before the app binds it; another explicit binder
    still could, which the app's restart (with back-off) then survives.
    """
    if env.mode == "transparent":
        return {p.container_port: p.container_port for p in spec.ports}
    allocated: dict[int, int] = {}
    for port in spec.ports:
        allocated[port.container_port] = free_port(host)
    return allocated


def app_metrics_flag(spec: PodSpec, app_ports: Mapping[int, int] | None = None) -> str | None:
    """``PORT:PATH`` of the app's metrics when its Workload asks to be scraped
    (Istio's ``prometheus.io/scrape``, ``port`` and ``path`` annotations).

    ``app_ports`` maps container ports to where the app really listens (explicit
    mode moves them); an annotated port that is not a container port stays."""
    annotations = dict(spec.annotations)
    if annotations.get("prometheus.io/scrape", "").lower() != "true":
        return None
    port = annotations.get("prometheus.io/port", "").strip()
    if not port.isdigit():
        return None
    actual = (app_ports or {}).get(int(port), int(port))
    return f"{actual}:{annotations.get('prometheus.io/path', '/metrics')}"


def agent_launch(spec: PodSpec, env: PodEnv, app_ports: Mapping[int, int]) -> AgentLaunch:
    """The sidecar agent of ``spec``'s pod, as an ``AgentLaunch``."""
    ip = env.address.ip
    transparent = env.mode == "transparent"
    return AgentLaunch(
        name=spec.name,
        namespace=spec.namespace,
        service_account=spec.service_account,
        ip=(ip,),
        xds_address=env.xds_address,
        admin_port=ADMIN_PORT,
        health_port=HEALTH_PORT,
        interception="redirect" if transparent else "none",
        admin_address=None if transparent else ip,
        health_bind="0.0.0.0" if transparent else ip,
        # Istio's ports on the pod's own address in both modes (explicit-mode
        # pods each have a loopback address of their own).
        stats_port=STATS_PORT,
        status_port=STATUS_PORT,
        app_metrics=app_metrics_flag(spec, app_ports),
        workload=spec.workload,
        # Run as root, the agent gives Envoy alone the group capture exempts.
        envoy_gid=env.proxy_gid if transparent and env.isolation is None else None,
        app_port=()
        if transparent
        else tuple((p.container_port, app_ports[p.container_port]) for p in spec.ports),
        label=spec.labels,
        app_probe=(spec.readiness.app_probe().flag(),) if spec.readiness is not None else (),
        work_dir=str(env.proxy_dir(spec.local_id)),
        identity=env.identity,
        xds_protocol=env.xds_protocol,
        extra_args=env.agent_args,
    )


def ambient_pod_argv(spec: PodSpec, env: PodEnv) -> list[str]:
    """The readiness process (``runtime.ambient_pod``) of a pod without a sidecar: an
    ambient pod's, or (``--without-node-proxy``) one out of the mesh.

    Started with ``-I -S -c`` (no ``site``, no ``runpy``, nothing from the
    environment): six of them run for six pods, and that keeps each one's private
    memory near the bare interpreter's (see its docstring). ``-c`` imports the
    module, so its compiled code comes from ``__pycache__`` when one is there (a
    script would be compiled at every start, about 1 MiB more)."""
    argv = [env.python, "-I", "-S", "-c", AMBIENT_POD_MAIN, "--name", spec.name]
    argv += ["--health-bind", "0.0.0.0", "--health-port", str(HEALTH_PORT)]
    if env.out_of_mesh:
        argv.append("--without-node-proxy")
    if spec.readiness is not None:
        argv += ["--app-probe", spec.readiness.app_probe().flag()]
    return argv


@functools.cache
def compile_ambient_pod() -> None:
    """Write the readiness process's bytecode, once per runtime, as the runtime's own
    user: the pods' sandboxed user cannot write ``__pycache__`` in the source tree,
    so each readiness process would compile its module at start, about 1.2 MiB more
    private memory each. Not being able to write it (a read-only install) only costs
    that memory."""
    spec = importlib.util.find_spec("pilotfish.runtime.ambient_pod")
    if spec is not None and spec.origin:
        with contextlib.suppress(OSError):
            compileall.compile_file(spec.origin, quiet=2)


def agent_argv(spec: PodSpec, env: PodEnv, app_ports: Mapping[int, int]) -> list[str]:
    """The sidecar agent's full command line, ``exec_prefix`` included (for an
    pod without a sidecar: its readiness process)."""
    if env.ambient or env.out_of_mesh:
        argv = ambient_pod_argv(spec, env)
        if env.isolation is not None:
            argv = sandbox_argv(env.python, env.isolation.proxy(env.proxy_dir(spec.local_id)), argv)
        return [*env.address.exec_prefix, *argv]
    argv = agent_launch(spec, env, app_ports).to_argv([env.python, "-m", "pilotfish.cli.agent"])
    if env.isolation is not None:
        proxy_dir = env.proxy_dir(spec.local_id)
        argv = sandbox_argv(env.python, env.isolation.proxy(proxy_dir), argv)
    return [*env.address.exec_prefix, *argv]


def agent_env(env: PodEnv, base: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The agent's environment: the supervisor's own (None) unless it is confined, then
    only a locale and PATH, so nothing of the supervisor's environment reaches a proxy."""
    if env.isolation is None:
        return None
    base = os.environ if base is None else base
    out = {key: base[key] for key in _CONFINED_INHERITED if key in base}
    out.update(PYTHONUNBUFFERED="1", HOME="/tmp", PATH=base.get("PATH") or os.defpath)
    return out


def app_argv(spec: PodSpec, env: PodEnv) -> list[str]:
    command = list(spec.command)
    if env.isolation is not None:
        if env.app_user is None:
            raise ValueError(f"pod {spec.name}: a confined pod needs an app user")
        sandbox = env.isolation.app(env.app_user, env.volumes)
        command = sandbox_argv(env.python, sandbox, command)
    return [*env.address.exec_prefix, *command]


def port_env_name(name: str) -> str:
    """``PORT_<NAME>``: the port name upper-cased, other characters than [A-Z0-9] as ``_``."""
    return "PORT_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def app_env(
    spec: PodSpec,
    env: PodEnv,
    app_ports: Mapping[int, int],
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The app's environment.

    Layers, later wins: a few variables inherited from ``base`` (default: this
    process's environment; see ``_INHERITED``) and ``PYTHONUNBUFFERED=1`` so
    logs are written as they happen; in explicit mode the proxy variables;
    the spec's ``env``; then what the runtime owns (pod identity, ``PORT``s and
    ``PATH`` with the virtualenv first, the spec's PATH or the inherited one after).
    """
    base = os.environ if base is None else base
    ip = env.address.ip
    inherited = _INHERITED if env.isolation is None else _CONFINED_INHERITED
    out = {key: base[key] for key in inherited if key in base}
    out["PYTHONUNBUFFERED"] = "1"
    if env.isolation is not None:
        out["HOME"] = "/tmp"  # the app's own private /tmp
    if env.mode == "explicit":
        proxy = f"http://{ip}:{OUTBOUND_PORT}"
        no_proxy = f"localhost,127.0.0.1,{ip}"
        out.update(HTTP_PROXY=proxy, http_proxy=proxy, NO_PROXY=no_proxy, no_proxy=no_proxy)
    out.update(spec.env)
    user_path = dict(spec.env).get("PATH") or base.get("PATH") or os.defpath
    venv_bin = os.path.dirname(env.python)
    out["PATH"] = os.pathsep.join([venv_bin, user_path]) if venv_bin else user_path
    out.update(
        POD_NAME=spec.name,
        POD_NAMESPACE=spec.namespace,
        POD_IP=ip,
        HOSTNAME=spec.name,
        SERVICE_ACCOUNT=spec.service_account,
    )
    if spec.ports:
        out["PORT"] = str(app_ports[spec.ports[0].container_port])
        for port in spec.ports:
            if port.name:
                out[port_env_name(port.name)] = str(app_ports[port.container_port])
    return out
