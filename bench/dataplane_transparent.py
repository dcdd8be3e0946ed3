"""Data-plane arrangements in network namespaces: pods as ``pilotfish up`` runs them (root only).

Theory of operation: both arrangements build a private ``TransparentNetwork``
(bridge ``pfbench``, pods in ``198.18.250.0/24``, netns ``pfbench-*``, host
veths ``pfbv*``), so they never touch a running mesh (``pf0``) or the e2e
tests (``198.18.240.0/24``). The load generator (hey) runs inside the client
pod with ``ip netns exec``, which also bind-mounts the pod's
``/etc/netns/<netns>/hosts`` over ``/etc/hosts``.

- ``direct_pods``: two pods *without* capture rules; an echo app listens on
  the server pod's address and the load goes straight to it. It measures the
  cost of the namespaces, veths and bridge alone, so that
  ``transparent_sidecars`` minus ``direct_pods`` is what the sidecars add.
- ``transparent_sidecars``: the runtime's own pieces, wired as
  ``MeshRuntime._start_pod`` wires them. The control plane runs in-process
  (on an event loop in a thread of this process) over a config directory with
  the ``Service`` ``echo`` (port ``http`` 9080), VIPs from ``198.19.250.0/24``
  and xDS also served on the bridge address; two ``PodRunner``\\ s start each
  pod's sidecar agent (``--interception redirect``, Envoy as gid 1337) and
  then its app: the echo app in the server pod, ``sleep infinity`` in the
  client pod. When the server pod turns ready it is registered as a
  ``WorkloadEntry`` in an in-memory store layered over the files, as the
  supervisor does. The load goes to ``http://echo:9080/``: ``echo`` resolves
  to the VIP through the pod's hosts file, the client pod's iptables hand the
  connection (hey runs as root, not the proxy's gid) to its Envoy, which
  sends it to the server pod, whose inbound capture hands it to its Envoy and
  then to the app.

Teardown is registered on the arrangement's ExitStack before anything is
created: pods stop, then the control plane and its loop, then the network is
removed; a leftover of the network (netns, link, ``/etc/netns`` entry) after
that is an error. Leftovers of a run that was killed are removed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import threading
from collections.abc import Coroutine
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bench.controlplane_scale import BenchmarkError
from bench.dataplane_base import (
    SERVICE_HOST,
    SERVICE_PORT,
    ArrangementSkipped,
    Rig,
    Target,
    envoy_pid,
    has_envoy,
    start_process,
    wait_for,
)
from bench.loadgen import fetch_in
from pilotfish.api.resource import ResourceKey
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.runtime.network import (
    CaptureConfig,
    HostResources,
    PodAddress,
    ServiceName,
    TransparentNetwork,
    cleanup_leftovers,
    find_leftovers,
    transparent_supported,
)
from pilotfish.runtime.pod import PodEnv, PodRunner, PodSpec, PortSpec
from pilotfish.runtime.registration import workload_entry
from pilotfish.store import CompositeStore, FileStore, MemoryStore

__all__ = [
    "BRIDGE",
    "POD_CIDR",
    "SERVICE_CIDR",
    "direct_pods",
    "transparent_sidecars",
]

BRIDGE = "pfbench"
NETNS_PREFIX = "pfbench-"
VETH_PREFIX = "pfbv"
POD_CIDR = "198.18.250.0/24"
SERVICE_CIDR = "198.19.250.0/24"
NAMESPACE = "default"

_SERVICE = f"""\
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: {NAMESPACE}}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: {SERVICE_PORT}}}]
"""

_T = TypeVar("_T")


def _require_root_and_hey(rig: Rig) -> None:
    ok, reason = transparent_supported()
    if not ok:
        raise ArrangementSkipped(reason)
    if rig.params.load_generator == "python" or shutil.which("hey") is None:
        raise ArrangementSkipped("the load runs inside a pod's netns, which needs hey")


def _leftovers() -> HostResources:
    return find_leftovers(BRIDGE, NETNS_PREFIX, veth_prefix=VETH_PREFIX)


def _teardown(net: TransparentNetwork) -> None:
    net.teardown()
    left = _leftovers()
    if left != HostResources():
        raise RuntimeError(f"the benchmark network was not fully removed: {left}")


def _network(rig: Rig, stack: contextlib.ExitStack) -> TransparentNetwork:
    """A fresh bridge for this arrangement, removed (and checked) when ``stack`` closes."""
    left = _leftovers()
    if left != HostResources():
        rig.log(f"removing leftovers of an earlier benchmark run: {left}")
        cleanup_leftovers(left)
    net = TransparentNetwork(BRIDGE, POD_CIDR, netns_prefix=NETNS_PREFIX, veth_prefix=VETH_PREFIX)
    stack.callback(_teardown, net)  # before setup: a half-made network goes too
    net.setup()
    return net


def _query(rig: Rig) -> str:
    return f"/?size={rig.params.response_bytes}"


def _fetch_ok(pod: PodAddress, url: str) -> bool:
    return fetch_in(pod.exec_prefix, url, (("Host", SERVICE_HOST),), 2.0)[0] == 200


# --- direct, pod to pod ------------------------------------------------------------------


def direct_pods(rig: Rig, stack: contextlib.ExitStack) -> Target:
    """hey in one pod straight to an echo app in another, no capture, no sidecar."""
    _require_root_and_hey(rig)
    net = _network(rig, stack)
    server = net.create_pod("direct-server", None, namespace=NAMESPACE)
    client = net.create_pod("direct-client", None, namespace=NAMESPACE)
    app = start_process(
        stack,
        "echo-direct-pod",
        [
            *server.exec_prefix,
            sys.executable,
            "-m",
            "pilotfish.samples.echo",
            "--service",
            "echo",
            "--version",
            "v1",
            "--host",
            server.ip,
            "--port",
            str(SERVICE_PORT),
        ],
        rig.work,
    )
    base = f"http://{server.ip}:{SERVICE_PORT}"
    ready = partial(_fetch_ok, client, f"{base}/ready-probe")
    wait_for("the echo app in its pod", ready, rig.params.ready_deadline_s, (app,))
    rig.log(f"pods ready: client {client.ip}, server {server.ip} (no capture)")
    return Target(
        url=f"{base}{_query(rig)}",
        headers=(("Host", SERVICE_HOST),),
        exec_prefix=client.exec_prefix,
        app_pid=app.proc.pid,  # `ip netns exec` execs the app in place
    )


# --- transparent sidecars ----------------------------------------------------------------


class _LoopThread:
    """An asyncio loop in a daemon thread, for the runtime's async pieces (control plane, pods)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="dataplane-runtime", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T], timeout_s: float) -> _T:
        """Run ``coro`` on the loop; cancel it and raise BenchmarkError after ``timeout_s``."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except TimeoutError as exc:
            future.cancel()
            raise BenchmarkError(f"timed out after {timeout_s:.0f} s") from exc
        except BaseException:
            future.cancel()  # Ctrl-C: do not leave it running behind the clean-up
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


def _control_plane(
    loop: _LoopThread, stack: contextlib.ExitStack, config_dir: Path, bridge_ip: str
) -> tuple[ControlPlane, MemoryStore]:
    """The in-process control plane as the supervisor runs it; returns it and its live store."""
    settings = ControlPlaneSettings(
        config_paths=(str(config_dir),),
        bind="127.0.0.1",
        xds_port=0,
        http_port=0,
        service_cidr=SERVICE_CIDR,
        extra_xds_binds=(bridge_ip,),
    )
    registrations = MemoryStore()
    store = CompositeStore(FileStore(settings.config_paths), [registrations])
    cp = ControlPlane(settings, store=store)
    stack.callback(lambda: loop.run(cp.close(), 30))
    loop.run(cp.start(), 60)
    return cp, registrations


async def _service_names(cp: ControlPlane) -> list[ServiceName]:
    snap = cp.generator.snapshot
    return [
        ServiceName(svc.hostname, svc.namespace, svc.addresses[0])
        for svc in snap.registry.services.values()
        if svc.addresses
    ]


def _register_when_ready(
    registrations: MemoryStore, spec: PodSpec, ip: str, name: str, ready: bool
) -> None:
    """``on_ready_change``: a ready pod becomes a WorkloadEntry (runs on the loop's thread)."""
    if ready:
        ports = {p.name: p.container_port for p in spec.ports if p.name}
        labels = dict(spec.labels)
        registrations.apply(
            workload_entry(name, spec.namespace, ip, labels, spec.service_account, ports)
        )
    else:
        with contextlib.suppress(KeyError):
            registrations.delete(ResourceKey("WorkloadEntry", spec.namespace, name))


def _stop_pod(loop: _LoopThread, runner: PodRunner) -> None:
    loop.run(runner.stop(grace=5.0), 30)


def transparent_sidecars(rig: Rig, stack: contextlib.ExitStack) -> Target:
    """hey in the client pod -> client Envoy -> server Envoy -> app, all by capture."""
    _require_root_and_hey(rig)
    net = _network(rig, stack)
    bridge_ip = net.gateway
    loop = _LoopThread()
    stack.callback(loop.close)
    config_dir = rig.work / "transparent-config"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "echo.yaml").write_text(_SERVICE)
    cp, registrations = _control_plane(loop, stack, config_dir, bridge_ip)

    server_spec = PodSpec(
        name="echo-v1-0",
        workload="echo-v1",
        namespace=NAMESPACE,
        command=("python", "-m", "pilotfish.samples.echo", "--service", "echo", "--version", "v1"),
        labels=(("app", "echo"), ("version", "v1")),
        ports=(PortSpec("http", SERVICE_PORT),),
    )
    client_spec = PodSpec(
        name="client-0",
        workload="client",
        namespace=NAMESPACE,
        command=("sleep", "infinity"),
        labels=(("app", "client"),),
    )
    # The control plane is reached on the bridge address, which capture leaves alone.
    capture = CaptureConfig(exclude_outbound_cidrs=(f"{bridge_ip}/32",))
    addresses = {
        spec.local_id: net.create_pod(spec.local_id, capture, namespace=NAMESPACE)
        for spec in (server_spec, client_spec)
    }
    names = loop.run(_service_names(cp), 10)
    net.update_names(names, dict.fromkeys(addresses, NAMESPACE))
    vip = next((n.vip for n in names if n.hostname.startswith("echo.")), None)

    deadline = rig.params.ready_deadline_s
    runners: dict[str, PodRunner] = {}
    for spec in (server_spec, client_spec):
        address = addresses[spec.local_id]
        env = PodEnv(
            address=address,
            mode="transparent",
            xds_address=f"{bridge_ip}:{cp.xds_port}",
            log_dir=rig.work / "pod-logs",
            work_dir=rig.work / "pods",
            python=sys.executable,
            agent_args=(
                "--concurrency",
                str(rig.params.envoy_concurrency),
                "--drain-duration",
                "1",
            ),
            sidecar_start_timeout=deadline,
        )
        on_ready = partial(_register_when_ready, registrations, spec, address.ip)
        runner = PodRunner(spec, env, on_ready)
        runners[spec.local_id] = runner
        stack.callback(partial(_stop_pod, loop, runner))
        loop.run(runner.start(), deadline + 10)

    pids: list[tuple[str, int]] = []
    for role, spec in (("client", client_spec), ("server", server_spec)):
        work_dir = runners[spec.local_id].env.proxy_dir(spec.local_id)
        wait_for(f"{work_dir}/envoy.pid", partial(has_envoy, work_dir), deadline)
        pid = envoy_pid(work_dir)
        if pid is None:  # exited between the two reads
            raise BenchmarkError(f"the Envoy of pod {spec.name} is gone")
        pids.append((role, pid))
    app_pid = runners[server_spec.local_id].status().app_pid
    client, server = addresses[client_spec.local_id], addresses[server_spec.local_id]
    rig.log(
        f"pods ready: client {client.ip}, server {server.ip}, echo VIP {vip}, "
        f"xDS {bridge_ip}:{cp.xds_port}"
    )
    return Target(
        url=f"http://{SERVICE_HOST}{_query(rig)}",
        headers=(("Host", SERVICE_HOST),),
        proxies=tuple(pids),
        exec_prefix=client.exec_prefix,
        app_pid=app_pid,
    )
