"""Does the ADS simulator converge like Envoy? The same edits, real and simulated proxies.

Theory of operation: one ``pilotfish control-plane`` with its mesh CA (tokens
from ``--ca-tokens``) serves a generated directory of N services
(``bench.config_gen``). Two groups of proxies connect to its xDS mTLS port over
delta ADS, in the same run, for the same config:

- ``envoy``: E ``pilotfish agent`` processes (explicit mode, ``--interception
  none``, Envoy ``--concurrency 1``), each a sidecar of ``svc-<i>`` on its own
  127.x address, with a workload certificate from the CA;
- ``sim``: E simulated sidecars (``python -m bench.ads_sim --tls-dir``) of the
  same services, one stream each on its own TLS connection.

Then, ``repeats`` times each, alternately: a VirtualService edit (svc-0's
weights, 90/10 <-> 50/50, which changes RDS for every proxy) and an endpoint
change (one WorkloadEntry address of another service, EDS for every proxy).
For each edit the benchmark polls ``/debug/syncz`` every ``poll_s`` seconds from
the file write until every proxy of both groups was sent a new version of the
type and ACKed it; a proxy's time is the end of the first poll that saw that.
Both groups are measured by the same poll, so their ratio compares like with
like (the polling adds up to one period plus the poll's own time to both). The
simulator's own ACK timestamps (``mark``/``wait``, as in the scale benchmark)
are reported beside it, which shows what the polling adds.

Every process is started in its own session and stopped (SIGTERM to all agents
at once, then each process group is killed) whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.ads_tls import issue_client_tls
from bench.churn_markers import percentile
from bench.config_gen import endpoint_address, generate_config, write_service
from bench.controlplane_scale import BenchmarkError, ScaleParams, _Simulator, pilotfish_executable
from bench.dataplane_base import (
    Process,
    answers_200,
    envoy_pid,
    free_port,
    http_get,
    start_process,
    wait_for,
)
from bench.procstats import cpu_seconds, peak_rss_mib, rss_mib
from pilotfish.agent.launch import AgentIdentity, AgentLaunch

__all__ = ["FULL", "QUICK", "RealismParams", "realism_table", "run_realism"]

GROUPS = ("envoy", "sim")


@dataclass(frozen=True, slots=True)
class RealismParams:
    """Sizes and bounds of one run."""

    services: int = 100
    proxies: int = 50  # per group: this many Envoys and this many simulated proxies
    repeats: int = 3  # of each edit
    envoy_concurrency: int = 1
    poll_s: float = 0.05
    ready_deadline_s: float = 300.0
    deadline_s: float = 60.0  # per edit
    quiet_s: float = 1.0


FULL = RealismParams()
QUICK = RealismParams(proxies=5, repeats=2)


@dataclass(frozen=True, slots=True)
class _Api:
    port: int
    token: str

    def get(self, path: str) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10.0) as response:
            return json.loads(response.read())

    def versions(self, short: str) -> dict[str, tuple[str, str]]:
        """Per proxy id: (sent, ACKed) version of type ``short`` (CDS, EDS, ...)."""
        out: dict[str, tuple[str, str]] = {}
        for proxy in self.get("/debug/syncz"):
            t = (proxy.get("types") or {}).get(short) or {}
            out[proxy["proxy_id"]] = (t.get("sent_version", ""), t.get("acked_version", ""))
        return out


@dataclass(frozen=True, slots=True)
class _Agent:
    process: Process
    health_port: int
    admin_port: int
    work_dir: Path


def latest_update_ms(stats: str, short: str) -> int | None:
    """The newest ``update_time`` (ms since the epoch) of Envoy's RDS (``short`` RDS) or
    EDS (``EDS``: per-cluster) subscriptions in ``/stats`` text output; None if none."""
    newest: int | None = None
    for line in stats.splitlines():
        name, _, value = line.partition(": ")
        if not name.endswith(".update_time"):
            continue
        if short == "RDS":
            wanted = ".rds." in name
        else:
            wanted = name.startswith("cluster.") and not name.startswith("cluster_manager.")
        if wanted and value.strip().isdigit():
            newest = max(newest or 0, int(value))
    return newest


def _envoy_applied(agents: list[_Agent], short: str, written_wall: float) -> list[float | None]:
    """Per Envoy, seconds from the write until it applied the update of type ``short``
    (its own ``update_time`` stat; None if it shows none since the write)."""
    out: list[float | None] = []
    for agent in agents:
        status, body = http_get(
            f"http://127.0.0.1:{agent.admin_port}/stats?filter=update_time", timeout=5.0
        )
        newest = latest_update_ms(body.decode(errors="replace"), short) if status == 200 else None
        seconds = None if newest is None else newest / 1000.0 - written_wall
        out.append(seconds if seconds is not None and seconds >= -0.001 else None)
    return out


def _ips(count: int) -> list[str]:
    """One 127.x address per agent, in a block away from the other benchmarks'."""
    pid = os.getpid()
    prefix = f"127.{250 + (pid >> 8) % 5}.{pid % 256}"
    return [f"{prefix}.{10 + i}" for i in range(count)]


def run_realism(
    params: RealismParams,
    log: Callable[[str], None] = print,
    executable: Path | None = None,
) -> dict[str, Any]:
    """Run the comparison once; ``error`` says why when it could not run."""
    exe = executable or pilotfish_executable()
    out: dict[str, Any] = {"parameters": asdict(params) | {"executable": str(exe)}}
    load_start = os.getloadavg()[0]  # other work on the machine
    with tempfile.TemporaryDirectory(prefix="pilotfish-realism-") as tmp:
        try:
            with contextlib.ExitStack() as stack:
                _scenario(params, exe, Path(tmp), stack, out, log)
        except BenchmarkError as exc:
            out["error"] = str(exc)
    out["load_average_1m"] = {"start": load_start, "end": os.getloadavg()[0]}
    return out


def _control_plane(
    exe: Path, work: Path, stack: contextlib.ExitStack, config_dir: Path, ca_dir: Path
) -> tuple[Process, int, int, int]:
    """Start it with a CA token for the ``default`` account; (process, http port, mTLS
    xDS port, CA port)."""
    token_file = work / "ca-token"
    token_file.write_text(secrets.token_urlsafe(24))
    token_file.chmod(0o600)
    tokens = work / "ca-tokens.json"
    tokens.write_text(json.dumps([{"token": token_file.read_text(), "namespace": "default"}]))
    http_port, mtls_port, ca_port = free_port(), free_port(), free_port()
    command = [
        str(exe),
        "control-plane",
        "--config",
        str(config_dir),
        "--xds-port",
        str(free_port()),
        "--http-port",
        str(http_port),
        "--bind",
        "127.0.0.1",
        "--api-token-file",
        str(work / "api-token"),
        "--ca-dir",
        str(ca_dir),
        "--ca-tokens",
        str(tokens),
        "--xds-mtls-port",
        str(mtls_port),
        "--secure-port",
        str(ca_port),
    ]
    cp = start_process(stack, "controlplane", command, work)
    return cp, http_port, mtls_port, ca_port


def _agents(
    params: RealismParams,
    exe: Path,
    work: Path,
    stack: contextlib.ExitStack,
    ca_port: int,
    mtls_port: int,
    root_pem: Path,
) -> list[_Agent]:
    """Start every agent."""
    agents: list[_Agent] = []
    for i, ip in enumerate(_ips(params.proxies)):
        health, admin, work_dir = free_port(), free_port(), work / f"agent-{i}"
        launch = AgentLaunch(
            name=f"envoy-{i}",
            namespace="default",
            service_account="default",
            ip=(ip,),
            interception="none",
            xds_address=f"127.0.0.1:{mtls_port}",
            admin_port=admin,
            health_port=health,
            stats_port=0,
            concurrency=params.envoy_concurrency,
            drain_duration=1,
            label=(("app", f"svc-{i % params.services}"), ("version", "v1")),
            work_dir=str(work_dir),
            xds_protocol="delta",
            identity=AgentIdentity(
                ca_address=f"127.0.0.1:{ca_port}",
                xds_secure_address=f"127.0.0.1:{mtls_port}",
                ca_token_file=str(work / "ca-token"),
                root_cert_file=str(root_pem),
                trust_domain="cluster.local",
                cert_ttl="3600s",
            ),
        )
        command = launch.to_argv([str(exe), "agent"])
        process = start_process(stack, f"agent-{i}", command, work)
        agents.append(_Agent(process, health, admin, work_dir))

    def terminate_all() -> None:  # runs before each agent's own stop (LIFO): one drain, not 50
        for agent in agents:
            with contextlib.suppress(ProcessLookupError):
                agent.process.proc.terminate()

    stack.callback(terminate_all)
    return agents


def _scenario(
    params: RealismParams,
    exe: Path,
    work: Path,
    stack: contextlib.ExitStack,
    out: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    config_dir = work / "config"
    generate_config(config_dir, params.services)
    ca_dir = work / "ca"
    tls_dir = issue_client_tls(ca_dir, work / "sim-tls")
    cp, http_port, mtls_port, ca_port = _control_plane(exe, work, stack, config_dir, ca_dir)
    wait_for("control plane /ready", answers_200(f"http://127.0.0.1:{http_port}/ready"), 120, (cp,))
    api = _Api(http_port, (work / "api-token").read_text().strip())
    started = time.monotonic()
    agents = _agents(params, exe, work, stack, ca_port, mtls_port, tls_dir / "root.pem")
    log(f"started {len(agents)} agents; waiting for their Envoys")
    for agent in agents:
        url = f"http://127.0.0.1:{agent.health_port}/healthz/ready"
        remaining = max(1.0, params.ready_deadline_s - (time.monotonic() - started))
        wait_for(f"{agent.process.name} ready", answers_200(url), remaining, (agent.process, cp))
    out["envoys_ready_s"] = time.monotonic() - started
    scale = ScaleParams(
        services=params.services,
        proxies=params.proxies,
        streams_per_channel=1,
        deadline_s=params.deadline_s,
        transports=("mtls",),
        protocols=("delta",),
    )
    sim = _Simulator(scale, mtls_port, work / "simulator.log", "delta", tls_dir)
    stack.callback(sim.stop)
    sim.expect("started", timeout=60)
    full = sim.expect("full_push", timeout=params.deadline_s + 30)
    if not full.get("converged"):
        raise BenchmarkError(f"simulated proxies' initial push did not converge: {full}")
    groups = _groups(api, params)
    _settle(api, params.deadline_s)
    log(f"{len(groups['envoy'])} Envoys and {len(groups['sim'])} simulated proxies in sync")

    edits = _edits(config_dir, params.services)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in edits}
    for repeat in range(params.repeats):
        for name, short, change in edits:
            one = _measure(api, sim, short, change(repeat), groups, params, agents)
            runs[name].append(one)
            groups_text = ", ".join(f"{g} {_fmt(one[g]['convergence_s'])}" for g in GROUPS)
            log(f"{name} #{repeat + 1}: {groups_text}, sim own {_fmt(one['sim_own_s'])}")
            _settle(api, params.deadline_s)
    out["edits"] = {name: _summary(rows) for name, rows in runs.items()}
    out["runs"] = runs
    envoy_rss = [rss_mib(pid) for pid in (envoy_pid(a.work_dir) for a in agents) if pid]
    out["envoy_rss_mib"] = {
        "count": len(envoy_rss),
        "median": statistics.median([r for r in envoy_rss if r is not None] or [0.0]),
        "total": sum(r for r in envoy_rss if r is not None),
    }
    out["cp_cpu_s"] = cpu_seconds(cp.proc.pid)
    out["cp_peak_rss_mib"] = peak_rss_mib(cp.proc.pid)
    out["sim_cpu_s"] = cpu_seconds(sim.proc.pid)


def _groups(api: _Api, params: RealismParams) -> dict[str, set[str]]:
    """Proxy ids of each group, once all of them are connected."""
    envoys = {f"envoy-{i}.default" for i in range(params.proxies)}
    sims = {f"sim-{i}.default" for i in range(params.proxies)}
    deadline = time.monotonic() + params.deadline_s
    while time.monotonic() < deadline:
        connected = set(api.versions("CDS"))
        if envoys <= connected and sims <= connected:
            return {"envoy": envoys, "sim": sims}
        time.sleep(0.2)
    raise BenchmarkError("not every proxy connected to the control plane")


def _settle(api: _Api, deadline_s: float) -> None:
    """Wait until ``/debug/pushz`` says every proxy ACKed everything."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        pushz = api.get("/debug/pushz")
        if pushz.get("converged"):
            time.sleep(0.3)  # let the tail of ACK bookkeeping finish before the next mark
            return
        time.sleep(0.1)
    raise BenchmarkError(f"control plane not converged after {deadline_s:.0f} s: {pushz}")


Edit = tuple[str, str, Callable[[int], Callable[[], object]]]


def _edits(config_dir: Path, services: int) -> list[Edit]:
    moved = services // 2

    def vs(repeat: int) -> Callable[[], object]:
        weights = (50, 50) if repeat % 2 == 0 else (90, 10)
        return lambda: write_service(config_dir, 0, weights=weights)

    def endpoint(repeat: int) -> Callable[[], object]:
        block = 11 if repeat % 2 == 0 else 10
        overrides = {0: endpoint_address(moved, 0, block=block)}
        return lambda: write_service(config_dir, moved, address_overrides=overrides)

    return [("vs_edit", "RDS", vs), ("endpoint_change", "EDS", endpoint)]


def _measure(
    api: _Api,
    sim: _Simulator,
    short: str,
    change: Callable[[], object],
    groups: dict[str, set[str]],
    params: RealismParams,
    agents: list[_Agent],
) -> dict[str, Any]:
    sim.send({"cmd": "mark"})
    sim.expect("mark", timeout=30)
    before = api.versions(short)
    written_wall = time.time()  # Envoy's update_time stats are wall-clock milliseconds
    written = time.monotonic()
    change()
    sim.send(
        {
            "cmd": "wait",
            "type": short,
            "mode": "affected",
            "timeout": params.deadline_s,
            "quiet": params.quiet_s,
        }
    )
    everyone = groups["envoy"] | groups["sim"]
    done_at: dict[str, float] = {}
    affected: set[str] = set()
    polls: list[float] = []
    deadline = written + params.deadline_s
    while time.monotonic() < deadline and not everyone <= set(done_at):
        began = time.monotonic()
        now_versions = api.versions(short)
        seen = time.monotonic()
        polls.append(seen - began)
        for proxy, (sent, acked) in now_versions.items():
            if proxy not in everyone or proxy in done_at:
                continue
            if sent and sent != before.get(proxy, ("", ""))[0]:
                affected.add(proxy)
                if acked == sent:
                    done_at[proxy] = seen
        time.sleep(max(0.0, params.poll_s - (time.monotonic() - began)))
    own = sim.expect("wait", timeout=params.deadline_s + params.quiet_s + 30)
    result: dict[str, Any] = {
        "type": short,
        "poll_s": {"median": statistics.median(polls), "max": max(polls)} if polls else None,
        "sim_own_s": None if own.get("last_ack_at") is None else own["last_ack_at"] - written,
        "sim_own_converged": bool(own.get("converged")),
    }
    applied = _envoy_applied(agents, short, written_wall)
    done = sorted(a for a in applied if a is not None)
    result["envoy_own_s"] = done[-1] if len(done) == len(applied) and done else None
    result["envoy_own_applied"] = len(done)
    for group, members in groups.items():
        times = sorted(done_at[p] - written for p in members if p in done_at)
        result[group] = {
            "proxies": len(members),
            "affected": len(members & affected),
            "acked": len(times),
            "convergence_s": times[-1] if len(times) == len(members) else None,
            "median_proxy_s": percentile(times, 50),
        }
    return result


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over repeats per group, and the ratio envoy / sim of those medians."""
    out: dict[str, Any] = {"repeats": len(rows)}
    for group in GROUPS:
        values = [r[group]["convergence_s"] for r in rows]
        done = sorted(v for v in values if v is not None)
        out[group] = {
            "median_s": statistics.median(done) if done else None,
            "min_s": done[0] if done else None,
            "max_s": done[-1] if done else None,
            "not_converged": len(values) - len(done),
        }
    own = sorted(r["sim_own_s"] for r in rows if r["sim_own_s"] is not None)
    out["sim_own_median_s"] = statistics.median(own) if own else None
    envoy_own = sorted(r["envoy_own_s"] for r in rows if r.get("envoy_own_s") is not None)
    out["envoy_own_median_s"] = statistics.median(envoy_own) if envoy_own else None
    out["envoy_own_missing"] = len(rows) - len(envoy_own)
    e_own, s_own = out["envoy_own_median_s"], out["sim_own_median_s"]
    out["ratio_own"] = e_own / s_own if e_own is not None and s_own else None
    envoy, sim = out["envoy"]["median_s"], out["sim"]["median_s"]
    out["ratio_envoy_to_sim"] = envoy / sim if envoy is not None and sim else None
    return out


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f} s"


def _ratio(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}x"


def realism_table(result: dict[str, Any]) -> Table:
    """Per edit: Envoy and simulator convergence (median [min-max] of the repeats), ratio."""
    params = result.get("parameters") or {}
    numbers = result.get("results") or {}
    title = (
        f"simulator realism: {params.get('proxies')} Envoys and {params.get('proxies')} "
        f"simulated proxies, N={params.get('services')} services, delta ADS over mTLS"
    )
    table = Table(title=title)
    for column in (
        "edit",
        "Envoy (syncz)",
        "simulator (syncz)",
        "Envoy / simulator",
        "Envoy (own update_time)",
        "simulator (own ACK times)",
        "Envoy / simulator (own)",
        "repeats",
    ):
        table.add_column(column, no_wrap=True)
    names = {"vs_edit": "VirtualService edit -> RDS", "endpoint_change": "endpoint change -> EDS"}

    def cell(group: dict[str, Any]) -> str:
        spread = f"{_fmt(group.get('min_s'))}-{_fmt(group.get('max_s'))}"
        text = f"{_fmt(group.get('median_s'))} [{spread}]"
        if group.get("not_converged"):
            text += f" [red]{group['not_converged']} not converged[/red]"
        return text

    for key, edit in (numbers.get("edits") or {}).items():
        envoy_own = _fmt(edit.get("envoy_own_median_s"))
        if edit.get("envoy_own_missing"):
            envoy_own += f" [red]({edit['envoy_own_missing']} without)[/red]"
        table.add_row(
            names.get(key, key),
            cell(edit["envoy"]),
            cell(edit["sim"]),
            _ratio(edit.get("ratio_envoy_to_sim")),
            envoy_own,
            _fmt(edit.get("sim_own_median_s")),
            _ratio(edit.get("ratio_own")),
            str(edit.get("repeats")),
        )
    rss = numbers.get("envoy_rss_mib") or {}
    table.caption = (
        f"Envoys ready after {_fmt(numbers.get('envoys_ready_s'))}; Envoy RSS median "
        f"{(rss.get('median') or 0):.0f} MiB ({(rss.get('total') or 0):.0f} MiB in all); "
        f"control plane peak RSS {(numbers.get('cp_peak_rss_mib') or 0):.0f} MiB"
    )
    load = numbers.get("load_average_1m") or {}
    if load:
        table.caption += f"; load average {load['start']:.1f} -> {load['end']:.1f}"
    if result.get("error"):
        table.add_row("[red]error[/red]", str(result["error"]))
    return table
