"""The data-plane modes benchmark's meshes: the chain rows and the Bookinfo memory/CPU runs.

Theory of operation. ``Mesh`` is one real ``pilotfish up --detach``
(transparent mode, mTLS on) with its own state directory, bridge ``pfbm0``,
pods in ``198.18.252.0/24``, VIPs in ``198.19.252.0/24`` and free ports, so it
never meets a user's mesh or the e2e tests' lanes. ``mesh_up`` removes what an
earlier run left on ``pfbm0``, brings the mesh up for a ``with`` block and
``down`` in a ``finally``, then looks for leftovers (netns, link,
``/etc/netns`` entry, tagged iptables rule, a process naming the state
directory): each one is reported as a problem and removed.

**A chain row** (``chain_row``) writes ``chain_manifest`` (client -> Service
``front`` -> Service ``back``; the rows differ only in the Namespace label, and
``ambient+waypoint`` adds the waypoint Gateway),
waits until ``front`` answers from the ``client`` pod's netns and every pod is
ready, then runs hey in that netns (``measure``). Afterwards the client's proxy
(its sidecar's ``front`` cluster, or the node proxy's outbound chain for the
pod) must have counted the load, so no row can go around its proxies; with a
waypoint, the waypoint must be ready first and must have carried the load
(``dataplane_modes_waypoint``). The
``client`` pod (``sleep infinity``) declares no ports: in ambient mode that
relies on the node proxy giving such a pod a valid inbound listener.

**A Bookinfo run** (``bookinfo_run``) finds the processes the mesh adds for the
six pods from ``pilotfish status -o json`` (``sidecar_pid``: agents, ambient
readiness processes, the node proxy's agent) and their descendants in ``/proc``
(the Envoys), the apps' trees left out; it reads their PSS/RSS from
``smaps_rollup`` when ``/productpage`` answers and after a fixed load through
the ingress gateway, and their CPU seconds over that load.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.controlplane_scale import BenchmarkError
from bench.dataplane_base import http_get, wait_for
from bench.dataplane_modes_base import (
    BOOKINFO,
    BOOKINFO_PODS,
    BRIDGE,
    EXPLICIT_CIDR,
    FRONT_APP,
    NAMESPACE,
    NETNS_PREFIX,
    POD_CIDR,
    PORT,
    SERVICE_CIDR,
    Log,
    ModesParams,
    measure,
)
from bench.dataplane_modes_waypoint import (
    WAYPOINT,
    check_waypoint,
    waypoint_gateway,
    waypoint_ready,
    waypoint_stats,
)
from bench.loadgen import LoadSpec, fetch_in, run_hey
from bench.procstats import cpu_seconds
from pilotfish.runtime.ports import free_port

__all__ = [
    "Mesh",
    "bookinfo_run",
    "chain_manifest",
    "chain_row",
    "is_envoy",
    "memory_of",
    "mesh_up",
    "parse_smaps_rollup",
    "process_tree",
]


# --- processes and memory --------------------------------------------------------------------


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """``Pss`` and ``Rss`` (kB) of a ``/proc/<pid>/smaps_rollup``, as ``pss_kib``/``rss_kib``.

    A field missing from the text is absent from the result.
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        key = {"Pss": "pss_kib", "Rss": "rss_kib"}.get(name.strip())
        fields = rest.split()
        if key and fields and fields[0].isdigit():
            out[key] = int(fields[0])
    return out


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        with contextlib.suppress(OSError, ValueError):
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


def process_tree(root: int, exclude: Iterable[int] = ()) -> list[int]:
    """``root`` and its descendants, leaving out the subtrees of ``exclude``."""
    skip = set(exclude)
    seen: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in skip or pid in seen:
            continue
        seen.append(pid)
        todo += _children(pid)
    return seen


def is_envoy(pid: int) -> bool:
    try:
        return "envoy" in Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return False


def memory_of(pids: Iterable[int]) -> dict[str, dict[str, int]]:
    """Summed PSS/RSS (KiB) and process counts: ``envoy`` (Envoys only) and ``all``."""
    groups = {g: {"pss_kib": 0, "rss_kib": 0, "processes": 0} for g in ("envoy", "all")}
    for pid in pids:
        try:
            sample = parse_smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())
        except OSError:
            continue  # gone
        for group in ("envoy", "all") if is_envoy(pid) else ("all",):
            groups[group]["processes"] += 1
            groups[group]["pss_kib"] += sample.get("pss_kib", 0)
            groups[group]["rss_kib"] += sample.get("rss_kib", 0)
    return groups


def _cpu(pids: Iterable[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        value = cpu_seconds(pid)
        if value is not None:
            out[pid] = value
    return out


# --- meshes ------------------------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    # The pods' `python` is this interpreter's venv, first on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def _host_leftovers() -> Any:
    from pilotfish.runtime.network.host import find_leftovers

    return find_leftovers(BRIDGE, NETNS_PREFIX)


def _processes_naming(text: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmd:
            out.append(int(entry))
    return out


class Mesh:
    """One ``pilotfish up --detach`` with its own state directory, ports and ranges."""

    def __init__(self, work: Path, name: str, log: Log) -> None:
        self.state_dir = work / f"state-{name}"
        self.name = name
        self.log = log
        self.cp_port = free_port()
        self.xds_port = free_port()
        self.secure_port = free_port()
        self.xds_mtls_port = free_port()
        self.ingress_port = free_port()

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pilotfish.cli.main", *args]
        if args and args[0] in ("up", "down", "status"):
            argv += ["--state-dir", str(self.state_dir)]
        try:
            return subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchmarkError(f"pilotfish {args[0]} did not finish in {timeout:.0f} s") from exc

    def up(self, manifests: Iterable[Path], dataplane: str, timeout: float) -> None:
        args = [
            "up",
            *map(str, manifests),
            "--detach",
            "--mode",
            "transparent",
            "--ingress-port",
            str(self.ingress_port),
            "--control-plane-port",
            str(self.cp_port),
            "--xds-port",
            str(self.xds_port),
            "--bridge",
            BRIDGE,
            "--pod-cidr",
            POD_CIDR,
            "--service-cidr",
            SERVICE_CIDR,
            "--explicit-cidr",
            EXPLICIT_CIDR,
            "--secure-port",
            str(self.secure_port),
            "--xds-mtls-port",
            str(self.xds_mtls_port),
            "--dataplane",
            dataplane,
        ]
        started = time.monotonic()
        done = self.cli(*args, timeout=timeout)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip()[-1500:]
            raise BenchmarkError(f"pilotfish up ({self.name}) failed ({done.returncode}): {tail}")
        self.log(f"{self.name}: mesh up in {time.monotonic() - started:.1f} s")

    def down(self) -> list[str]:
        """``down``; then what is left of the mesh (removed), as problems to report."""
        problems: list[str] = []
        try:
            done = self.cli("down", timeout=120)
            if done.returncode != 0:
                problems.append(f"down exited {done.returncode}: {done.stderr.strip()[-300:]}")
        except BenchmarkError as exc:
            problems.append(str(exc))
        left = _host_leftovers()
        if left.bridge or left.netns or left.host_veths or left.iptables_rules or left.files:
            problems.append(f"left on the host after down: {left}")
            from pilotfish.runtime.network.host import cleanup_leftovers

            with contextlib.suppress(RuntimeError):
                cleanup_leftovers(left)
        stray = _processes_naming(str(self.state_dir))
        if stray:
            problems.append(f"processes left after down: {stray}")
            for pid in stray:  # descendants of this run, by pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
        if problems:
            self.log(f"{self.name}: " + "; ".join(problems))
        return problems

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.state_dir / "state.json").read_text()))

    def netns(self, namespace: str, pod: str) -> str:
        return str(self.state()["pods"][f"{namespace}/{pod}"]["netns"])

    def pods(self) -> list[dict[str, Any]]:
        done = self.cli("status", "-o", "json", timeout=60)
        if done.returncode != 0:
            raise BenchmarkError(f"status failed: {done.stderr.strip()[-300:]}")
        return list(json.loads(done.stdout)["pods"])


@contextlib.contextmanager
def mesh_up(
    work: Path,
    name: str,
    manifests: Iterable[Path],
    dataplane: str,
    params: ModesParams,
    log: Log,
    problems: list[str],
) -> Iterator[Mesh]:
    """A mesh for the block; ``down`` and the leftover check whatever happens."""
    left = _host_leftovers()
    if left.bridge or left.netns or left.host_veths or left.iptables_rules or left.files:
        from pilotfish.runtime.network.host import cleanup_leftovers

        log(f"removing leftovers of an earlier run on {BRIDGE}: {left}")
        cleanup_leftovers(left)
    mesh = Mesh(work, name, log)
    try:
        mesh.up(manifests, dataplane, params.up_timeout_s)
        yield mesh
    finally:
        problems += [f"{name}: {p}" for p in mesh.down()]


# --- the chain -------------------------------------------------------------------------------


def _workload(name: str, command: list[str], port: int | None, env: Mapping[str, str]) -> str:
    doc: dict[str, Any] = {
        "apiVersion": "pilotfish.io/v1alpha1",
        "kind": "Workload",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app": name, "version": "v1"},
        },
        "spec": {"replicas": 1, "serviceAccount": name, "command": command},
    }
    if env:
        doc["spec"]["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if port is not None:
        doc["spec"]["ports"] = [{"name": "http", "containerPort": port}]
        doc["spec"]["readinessProbe"] = {"httpGet": {"path": "/health", "port": "http"}}
    return json.dumps(doc)


def _service(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": PORT}]},
        }
    )


def chain_manifest(injection_disabled: bool, response_bytes: int, waypoint: bool = False) -> str:
    """The chain's objects (JSON documents are YAML); only the Namespace label differs.

    ``waypoint``: the Namespace labelled ``istio.io/use-waypoint: waypoint`` and the
    waypoint Gateway added, in the same file, so no connection predates the label.
    """
    labels = {"istio-injection": "disabled"} if injection_disabled else {}
    if waypoint:
        labels = {"istio.io/use-waypoint": WAYPOINT}
    namespace = json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}}
    )
    back = [
        "python",
        "-m",
        "pilotfish.samples.echo",
        "--service",
        "back",
        "--version",
        "v1",
        "--port",
        str(PORT),
    ]
    front_env = {"PORT": str(PORT), "BACK_URL": f"http://back:{PORT}/?size={response_bytes}"}
    docs = [
        namespace,
        _workload("back", back, PORT, {}),
        _service("back"),
        _workload("front", ["python", str(FRONT_APP)], PORT, front_env),
        _service("front"),
        _workload("client", ["sleep", "infinity"], None, {}),
    ]
    if waypoint:
        docs.append(waypoint_gateway(NAMESPACE))
    return "\n---\n".join(docs) + "\n"


def chain_row(
    name: str,
    work: Path,
    params: ModesParams,
    hey: str,
    log: Log,
    problems: list[str],
) -> dict[str, Any]:
    manifest = work / f"chain-{name.replace('+', '-')}.yaml"
    waypoint = name == "ambient+waypoint"
    manifest.write_text(chain_manifest(name == "direct", params.response_bytes, waypoint))
    dataplane = "ambient" if name.startswith("ambient") else "sidecar"
    with mesh_up(work, name, [manifest], dataplane, params, log, problems) as mesh:
        prefix = ("ip", "netns", "exec", mesh.netns(NAMESPACE, "client-0"))
        url = f"http://front:{PORT}/"

        def answers() -> bool:
            status, length = fetch_in(prefix, url, (), 3.0)
            return status == 200 and length >= params.response_bytes

        if waypoint:
            wait_for("the waypoint to be ready", lambda: waypoint_ready(mesh.pods(), NAMESPACE), 90)
        waited = wait_for(f"{url} from the client pod", answers, params.ready_deadline_s)
        pods = mesh.pods()
        rows = {p["name"]: p.get("dataplane") for p in pods}
        unready = {p["name"]: p.get("message") for p in pods if not p.get("ready")}
        if unready:
            raise BenchmarkError(f"pods not ready: {unready}")
        log(f"{name}: chain answers after {waited:.1f} s; data planes {rows}")
        spec = LoadSpec(
            url=url,
            headers=(),
            rate=params.rate,
            connections=params.connections,
            duration_s=params.duration_s,
            exec_prefix=prefix,
        )
        if params.warmup_s > 0:  # here, so the counters below see the measured run only
            run_hey(LoadSpec(**{**asdict(spec), "duration_s": params.warmup_s}), hey)
        before = _client_path_count(mesh, dataplane, prefix) if name != "direct" else 0
        through = waypoint_stats() if waypoint else {}
        result = measure(spec, 0, hey)
        result["dataplanes"] = rows
        if name != "direct":
            # The load must have crossed the mode's proxy, not gone around it.
            crossed = _client_path_count(mesh, dataplane, prefix) - before
            result["client_proxy_count"] = crossed
            if crossed <= 0:
                raise BenchmarkError(f"{name}: the client's proxy counted none of the load")
        if waypoint:
            result["waypoint"] = check_waypoint(through, waypoint_stats(), result)
        return result


def _client_path_count(mesh: Mesh, dataplane: str, prefix: tuple[str, ...]) -> int:
    """A counter of the client's proxy for its calls to ``front``.

    Sidecar: the client sidecar's requests to the ``front`` cluster (its admin API
    inside the pod). Ambient: the node proxy's connections on the client pod's
    outbound chain for ``front`` (L4: connections, not requests).
    """
    host = f"front.{NAMESPACE}.svc.cluster.local"
    wanted: tuple[str, ...]
    if dataplane == "ambient":
        port = mesh.state()["gateways"]["node-proxy"]["admin_port"]
        text = http_get(f"http://127.0.0.1:{port}/stats?filter=client-0")[1].decode()
        # Through a waypoint the chain's cluster is ``ambient_waypoint|...``.
        wanted = tuple(
            f"tcp.{kind}|{PORT}|{host}|client-0.{NAMESPACE}.downstream_cx_total"
            for kind in ("ambient_outbound", "ambient_waypoint")
        )
    else:
        done = subprocess.run(
            [*prefix, "curl", "-s", "-m", "5", "http://127.0.0.1:15000/stats?filter=front"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
        text = done.stdout
        wanted = (f"cluster.outbound|{PORT}||{host}.upstream_rq_total",)
    total = 0
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key in wanted and value.strip().isdigit():
            total += int(value)
    return total


# --- Bookinfo: memory and CPU ------------------------------------------------------------------


def _mesh_pids(mesh: Mesh, mode: str) -> list[int]:
    """The processes the mesh adds for Bookinfo's six pods (not the apps, not the gateway)."""
    rows = {p["name"]: p for p in mesh.pods()}
    missing = [n for n in BOOKINFO_PODS if not rows.get(n, {}).get("ready")]
    if missing:
        raise BenchmarkError(f"pods not ready: {missing}")
    roots = [int(rows[n]["sidecar_pid"]) for n in BOOKINFO_PODS if rows[n].get("sidecar_pid")]
    if mode == "ambient":
        node = rows.get("node-proxy") or {}
        if not node.get("sidecar_pid"):
            raise BenchmarkError("no node proxy in the status")
        roots.append(int(node["sidecar_pid"]))
    if len(roots) != len(BOOKINFO_PODS) + (mode == "ambient"):
        raise BenchmarkError(f"a mesh process is missing from the status: {roots}")
    apps = [int(p["app_pid"]) for p in rows.values() if p.get("app_pid")]
    pids: list[int] = []
    for root in roots:
        pids += [p for p in process_tree(root, apps) if p not in pids]
    return pids


def bookinfo_run(
    mode: str, work: Path, params: ModesParams, hey: str, log: Log, problems: list[str]
) -> dict[str, Any]:
    manifests = [BOOKINFO / "bookinfo.yaml", BOOKINFO / "networking" / "bookinfo-gateway.yaml"]
    with mesh_up(work, f"bookinfo-{mode}", manifests, mode, params, log, problems) as mesh:
        url = f"http://127.0.0.1:{mesh.ingress_port}/productpage"
        waited = wait_for(url, lambda: http_get(url, timeout=5)[0] == 200, params.ready_deadline_s)
        pids = _mesh_pids(mesh, mode)
        envoys = [p for p in pids if is_envoy(p)]
        log(f"bookinfo {mode}: productpage after {waited:.1f} s; {len(pids)} mesh processes")
        ready = memory_of(pids)
        cpu_before = _cpu(pids)
        spec = LoadSpec(
            url=url,
            headers=(),
            rate=params.ingress_rate,
            connections=params.ingress_connections,
            duration_s=params.ingress_duration_s,
        )
        load = run_hey(spec, hey).as_dict()
        cpu_after = _cpu(pids)
        after = memory_of(pids)
        both = [p for p in cpu_before if p in cpu_after]
        return {
            "pids": pids,
            "envoy_pids": envoys,
            "ready": ready,
            "after_load": after,
            "cpu_s": {
                "envoy": sum(cpu_after[p] - cpu_before[p] for p in both if p in envoys),
                "all": sum(cpu_after[p] - cpu_before[p] for p in both),
            },
            "load": load,
        }
