"""Where the stats access loggers' per-request cost is: ``stats_tags_cost``.

Theory of operation: one real Envoy (``pilotfish.envoy_binary``, one worker
thread) has one listener per *variant*; every listener's connection manager
answers a 1 KB ``direct_response`` itself, so nothing but the variant differs
between listeners and no upstream, app or second proxy adds noise. A round
runs hey closed-loop (2 keep-alive connections, as fast as Envoy answers,
``duration_s`` each, bounded by a timeout) once against each listener, in an
order rotated every round so a slow spell of the shared machine lands on each
variant in turn. The number per variant and round is Envoy's CPU time
(utime + stime from ``/proc/<pid>/stat``) over the run divided by the
requests answered; the table gives the median over the rounds with its
min-max, and what each variant adds over ``none``. A shared 2-core machine
moves that number by +-10 µs from run to run, as much as a logger costs, so
each variant's stats loggers are configured ``repeat`` times over (the same
stats, updated again: the same work per copy) and "per copy" divides what
they add by ``repeat``; the header filters and the tracer are not repeated.

The variants' stats loggers come from the product's builder
(``xds/build/stats.py``): ``real`` is what a sidecar's outbound connection
manager gets, ``inbound`` what an mTLS inbound one gets; the others
rewrite the reference layout of Istio's labels (every label an Envoy tag, as
before packing) to tell where the cost is:

- ``tags24``: the reference layout (24 tags from command operators, 4 stats);
- ``literal24``: the same 24 tags, each with a literal value (no operator);
- ``packed1``: one tag whose format packs the 24 operators, joined by a
  separator;
- ``no_constants``: the reference layout minus the labels constant for the
  proxy (its own workload's, from ``%ENVIRONMENT(...)%``);
- ``packed_no_constants``: both;
- ``stats1``: the reference layout with only ``istio_requests_total``;
- ``peer_headers``: no stats logger; the client's peer-header mutation and the
  server's header-to-metadata filter (``xds/build/peer_headers.py``);
- ``peer_seven``: ``peer_headers`` as it was before the caller's facts went
  into one record header: seven headers, seven metadata entries (hand-built);
- ``tracer``: no stats logger; Zipkin tracing at 1 % sampling
  (``xds/build/tracing.py``), its collector a port nobody listens on;
- ``grpc_counter``: no stats logger; the gRPC message counter (a Lua filter
  behind a content-type matcher, ``xds/build/grpc_messages.py``), which skips
  these plain HTTP requests;
- ``all_on``: what a sidecar's outbound connection manager has with
  telemetry on: ``real``'s loggers (not repeated), the gRPC counter, the peer
  header mutation and the tracer.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.access_loggers.stats.v3 import stats_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2 as hm_pb2
from envoy.extensions.filters.http.header_to_metadata.v3 import (
    header_to_metadata_pb2 as h2m_pb2,
)
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from bench.dataplane_base import http_get, wait_for
from bench.loadgen import find_hey, parse_hey_output
from bench.procstats import cpu_seconds, machine_info, utc_timestamp
from bench.report import write_result
from pilotfish import ir
from pilotfish.cli.tables import print_table
from pilotfish.envoy_binary import find_envoy
from pilotfish.peer_labels import PEER_HEADERS, peer_record
from pilotfish.runtime.ports import free_port
from pilotfish.xds.build import stats
from pilotfish.xds.build._common import any_of
from pilotfish.xds.build.grpc_messages import GRPC_MESSAGES_FILTER, build_grpc_message_counter
from pilotfish.xds.build.peer_headers import (
    PEER_HEADERS_FILTER,
    PEER_METADATA_FILTER,
    build_peer_headers,
    build_peer_metadata,
)
from pilotfish.xds.build.tracing import build_tracing

__all__ = ["VARIANTS", "ProbeParams", "probe_table", "run_probe"]

_REPO = Path(__file__).resolve().parent.parent
_HCM = "envoy.filters.network.http_connection_manager"
_ROUTER = "envoy.filters.http.router"
_ZIPKIN_CLUSTER = "zipkin"
# What the agent gives a real Envoy (agent/workload_env.py), so %ENVIRONMENT% has values.
_ENVIRONMENT = {
    var: value
    for (_suffix, _header, var), value in zip(
        PEER_HEADERS,
        ("productpage-v1", "default", "productpage", "v1", "productpage", "v1", "Kubernetes"),
        strict=True,
    )
} | {"PILOTFISH_PRINCIPAL": "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"}
_SEPARATOR = "\x1f"
_ENVIRONMENT["PILOTFISH_PEER"] = peer_record(
    {suffix: _ENVIRONMENT[var] for suffix, _header, var in PEER_HEADERS}
)


@dataclass(frozen=True, slots=True)
class ProbeParams:
    rounds: int = 5
    duration_s: float = 4.0
    warmup_s: float = 1.0
    connections: int = 2
    response_bytes: int = 1024
    concurrency: int = 1
    # Stats loggers configured this many times over, so their cost stands out
    # of the machine's noise; the table divides what they add by it.
    repeat: int = 4
    variants: tuple[str, ...] = ()  # empty: all


@dataclass(frozen=True, slots=True)
class _Listener:
    """What one variant adds to the bare connection manager."""

    access_log: tuple[accesslog_pb2.AccessLog, ...] = ()
    http_filters: tuple[hcm_pb2.HttpFilter, ...] = ()
    tracing: hcm_pb2.HttpConnectionManager.Tracing | None = None


def _configs(logs: Sequence[accesslog_pb2.AccessLog]) -> list[stats_pb2.Config]:
    out = []
    for log in logs:
        config = stats_pb2.Config()
        log.typed_config.Unpack(config)
        out.append(config)
    return out


def _rewrite(
    logs: Sequence[accesslog_pb2.AccessLog],
    tags: Callable[[list[stats_pb2.Config.Tag]], list[stats_pb2.Config.Tag]],
    keep_stat: Callable[[str], bool] = lambda _name: True,
) -> tuple[accesslog_pb2.AccessLog, ...]:
    """``logs`` with every stat's tags passed through ``tags`` and only the stats kept."""
    out = []
    for log, config in zip(logs, _configs(logs), strict=True):
        for stat_list in (config.counters, config.histograms):
            kept = [s for s in stat_list if keep_stat(s.stat.name)]
            del stat_list[:]
            stat_list.extend(kept)
            for item in stat_list:
                new = tags(list(item.stat.tags))
                del item.stat.tags[:]
                item.stat.tags.extend(new)
        copy = accesslog_pb2.AccessLog()
        copy.CopyFrom(log)
        copy.typed_config.CopyFrom(any_of(config))
        out.append(copy)
    return tuple(out)


def _literal(tags: list[stats_pb2.Config.Tag]) -> list[stats_pb2.Config.Tag]:
    return [stats_pb2.Config.Tag(name=t.name, value_format="value") for t in tags]


def _packed(tags: list[stats_pb2.Config.Tag]) -> list[stats_pb2.Config.Tag]:
    joined = _SEPARATOR.join(t.value_format for t in tags)
    return [stats_pb2.Config.Tag(name="istio", value_format=joined)]


def _no_constants(tags: list[stats_pb2.Config.Tag]) -> list[stats_pb2.Config.Tag]:
    return [t for t in tags if "%ENVIRONMENT(" not in t.value_format]


def _reference_logs() -> list[accesslog_pb2.AccessLog]:
    """Outbound loggers with every Istio label an Envoy tag: the product's loggers
    with a packed tag (``pilotfish.packed_labels``) unpacked into one tag per label,
    a label of the proxy's own back to its ``%ENVIRONMENT(...)%`` operator."""
    logs = stats.build_http_stats_logs(ir.Metrics("source"))
    try:
        from pilotfish.packed_labels import PACKED_TAG, unpack
        from pilotfish.peer_labels import OWN_VARIABLES
    except ImportError:  # a tree from before packing: already one tag per label
        return logs
    own = {var: f"%ENVIRONMENT({var})%" for var in OWN_VARIABLES}

    def expand(tags: list[stats_pb2.Config.Tag]) -> list[stats_pb2.Config.Tag]:
        out = []
        for tag in tags:
            if tag.name != PACKED_TAG:
                out.append(tag)
                continue
            out += [
                stats_pb2.Config.Tag(name=name, value_format=fmt)
                for name, fmt in unpack(tag.value_format, own)
            ]
        return out

    return list(_rewrite(logs, expand))


def _peer_seven_filters() -> tuple[hcm_pb2.HttpFilter, ...]:
    """``peer_headers`` as it was before the record: the client sets seven
    headers (one per fact, each from its own variable) and the server moves
    each into metadata. Hand-built, for comparison in the same run."""
    mutation = hm_pb2.HeaderMutation()
    metadata = build_peer_metadata()
    for _suffix, header, var in PEER_HEADERS:
        added = mutation.mutations.request_mutations.add().append
        added.header.key, added.header.value = header, f"%ENVIRONMENT({var})%"
        added.append_action = added.OVERWRITE_IF_EXISTS_OR_ADD
        rule = metadata.request_rules.add(header=header, remove=True)
        rule.on_header_present.metadata_namespace = "pilotfish.peer"
        rule.on_header_present.key = header
        rule.on_header_present.type = h2m_pb2.Config.STRING
    return (
        hcm_pb2.HttpFilter(name=PEER_HEADERS_FILTER, typed_config=any_of(mutation)),
        hcm_pb2.HttpFilter(name=PEER_METADATA_FILTER, typed_config=any_of(metadata)),
    )


def _variants(repeat: int = 1) -> dict[str, _Listener]:
    outbound = tuple(stats.build_http_stats_logs(ir.Metrics("source")))
    inbound = tuple(stats.build_http_stats_logs(ir.Metrics("destination"), peer_certified=True))
    reference = _reference_logs()
    peer_filters = (
        hcm_pb2.HttpFilter(name=PEER_HEADERS_FILTER, typed_config=any_of(build_peer_headers())),
        hcm_pb2.HttpFilter(name=PEER_METADATA_FILTER, typed_config=any_of(build_peer_metadata())),
    )
    seven = _peer_seven_filters()
    grpc_counter = hcm_pb2.HttpFilter(
        name=GRPC_MESSAGES_FILTER, typed_config=any_of(build_grpc_message_counter())
    )
    provider = ir.TracingProvider(
        name="zipkin", kind="zipkin", address="127.0.0.1", port=9, cluster=_ZIPKIN_CLUSTER
    )
    tracing = build_tracing(ir.Tracing(provider=provider, sampling=1.0))
    variants = {
        "none": _Listener(),
        "real": _Listener(access_log=outbound),
        "inbound": _Listener(access_log=inbound),
        "tags24": _Listener(access_log=tuple(reference)),
        "literal24": _Listener(access_log=_rewrite(reference, _literal)),
        "packed1": _Listener(access_log=_rewrite(reference, _packed)),
        "no_constants": _Listener(access_log=_rewrite(reference, _no_constants)),
        "packed_no_constants": _Listener(
            access_log=_rewrite(reference, lambda tags: _packed(_no_constants(tags)))
        ),
        "stats1": _Listener(
            access_log=_rewrite(reference, list, keep_stat=lambda n: n == "requests_total")
        ),
        "peer_headers": _Listener(http_filters=peer_filters),
        "peer_seven": _Listener(http_filters=seven),
        "tracer": _Listener(tracing=tracing),
        "grpc_counter": _Listener(http_filters=(grpc_counter,)),
        # What a sidecar's outbound connection manager has with telemetry on.
        "all_on": _Listener(
            access_log=outbound,
            http_filters=(grpc_counter, peer_filters[0]),
            tracing=tracing,
        ),
    }
    # Each logger set ``repeat`` times: the same stats updated again, the same work.
    return {
        name: replace(v, access_log=v.access_log * repeat) if name in _STATS_VARIANTS else v
        for name, v in variants.items()
    }


# The variants whose difference from ``none`` is their stats loggers (repeated).
_STATS_VARIANTS = frozenset(
    {"real", "inbound", "tags24", "literal24", "packed1", "no_constants"}
    | {"packed_no_constants", "stats1"}
)

VARIANTS = (
    "none",
    "real",
    "inbound",
    "tags24",
    "literal24",
    "packed1",
    "no_constants",
    "packed_no_constants",
    "stats1",
    "peer_headers",
    "peer_seven",
    "tracer",
    "grpc_counter",
    "all_on",
)


def _listener(name: str, port: int, variant: _Listener, body: str) -> dict[str, Any]:
    route = route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            rc_pb2.VirtualHost(
                name=name,
                domains=["*"],
                routes=[
                    rc_pb2.Route(
                        match=rc_pb2.RouteMatch(prefix="/"),
                        direct_response=rc_pb2.DirectResponseAction(status=200),
                    )
                ],
            )
        ],
    )
    route.virtual_hosts[0].routes[0].direct_response.body.inline_string = body
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        route_config=route,
        http_filters=[
            *variant.http_filters,
            hcm_pb2.HttpFilter(name=_ROUTER, typed_config=any_of(router_pb2.Router())),
        ],
        access_log=list(variant.access_log),
    )
    if variant.tracing is not None:
        hcm.tracing.CopyFrom(variant.tracing)
    listener = listener_pb2.Listener(name=name)
    listener.address.socket_address.address = "127.0.0.1"
    listener.address.socket_address.port_value = port
    listener.filter_chains.add().filters.add(name=_HCM, typed_config=any_of(hcm))
    return json_format.MessageToDict(listener, preserving_proto_field_name=True)


def _bootstrap(
    admin_port: int, ports: dict[str, int], body: str, repeat: int = 1
) -> dict[str, Any]:
    variants = _variants(repeat)
    zipkin = {
        "name": _ZIPKIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "load_assignment": {
            "cluster_name": _ZIPKIN_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": "127.0.0.1", "port_value": 9}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    return {
        "node": {"id": "stats-tags-cost", "cluster": "productpage.default"},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "static_resources": {
            "listeners": [
                _listener(name, port, variants[name], body) for name, port in ports.items()
            ],
            "clusters": [zipkin],
        },
    }


@dataclass(slots=True)
class _Run:
    requests: int
    non_200: int
    cpu_us_per_request: float
    requests_per_s: float | None


@dataclass(slots=True)
class _Envoy:
    process: subprocess.Popen[bytes]
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)


def _start_envoy(params: ProbeParams, work: Path, names: Sequence[str]) -> _Envoy:
    ports = {name: free_port() for name in names}
    config = _bootstrap(free_port(), ports, "x" * params.response_bytes, params.repeat)
    config_path = work / "envoy.json"
    config_path.write_text(json.dumps(config))
    log_path = work / "envoy.log"
    command = [find_envoy(), "-c", str(config_path), "--concurrency", str(params.concurrency)]
    command += ["--base-id", str(os.getpid() % 60000 + 1000), "-l", "warning"]
    env = os.environ | _ENVIRONMENT
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    return _Envoy(process, log_path, ports)


def _stop(envoy: _Envoy) -> None:
    if envoy.process.poll() is None:
        envoy.process.send_signal(signal.SIGTERM)
        try:
            envoy.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            envoy.process.kill()
            envoy.process.wait(timeout=10)


def _hey(
    hey: str, url: str, params: ProbeParams, duration_s: float
) -> tuple[int, int, float | None]:
    command = [hey, "-z", f"{duration_s:g}s", "-c", str(params.connections), "-t", "5", url]
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration_s + 30, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"hey did not finish within {exc.timeout:.0f} s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"hey exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    report = parse_hey_output(done.stdout)
    requests = sum(report.status_counts.values())
    if not requests:
        raise RuntimeError(f"hey answered nothing:\n{done.stdout[-500:]}")
    return requests, requests - report.status_counts.get(200, 0), report.requests_per_s


def _measure(hey: str, envoy: _Envoy, name: str, params: ProbeParams) -> _Run:
    pid = envoy.process.pid
    before = cpu_seconds(pid)
    requests, non_200, rps = _hey(
        hey, f"http://127.0.0.1:{envoy.ports[name]}/", params, params.duration_s
    )
    after = cpu_seconds(pid)
    if before is None or after is None:
        raise RuntimeError(f"Envoy exited during {name}'s run")
    return _Run(requests, non_200, round((after - before) / requests * 1e6, 2), rps)


def _summary(
    rounds: Sequence[dict[str, dict[str, Any]]], names: Sequence[str], repeat: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        values = [r[name]["cpu_us_per_request"] for r in rounds]
        out[name] = {
            "median": round(statistics.median(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
            "requests_per_s": round(
                statistics.median(r[name]["requests_per_s"] or 0.0 for r in rounds), 0
            ),
            "non_200": sum(r[name]["non_200"] for r in rounds),
        }
    if "none" in out:
        base = out["none"]["median"]
        for name, entry in out.items():
            entry["added_us"] = round(entry["median"] - base, 1)
            copies = repeat if name in _STATS_VARIANTS else 1
            entry["added_us_per_copy"] = round(entry["added_us"] / copies, 1)
    return out


def run_probe(params: ProbeParams, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Start the Envoy, run the rounds, summarize (JSON-ready; ``error`` on failure)."""
    names = list(params.variants or VARIANTS)
    out: dict[str, Any] = {"parameters": asdict(params) | {"variants": names}, "rounds": []}
    out["load_average_before"] = os.getloadavg()
    hey = find_hey(install=True, log=log)
    if hey is None:
        out["error"] = "hey is not installed and could not be installed"
        return out
    with tempfile.TemporaryDirectory(prefix="pilotfish-stats-tags-") as tmp:
        envoy = _start_envoy(params, Path(tmp), names)
        try:
            for name in names:
                url = f"http://127.0.0.1:{envoy.ports[name]}/"

                def ok(url: str = url) -> bool:
                    if envoy.process.poll() is not None:
                        raise RuntimeError(
                            "Envoy exited: " + envoy.log_path.read_text(errors="replace")[-2000:]
                        )
                    status, body = http_get(url)
                    return status == 200 and len(body) == params.response_bytes

                wait_for(f"{name} answering", ok, 30.0)
                _hey(hey, url, params, params.warmup_s)
            for i in range(params.rounds):
                k = i % len(names)
                order = [*names[k:], *names[:k]]
                runs = {name: asdict(_measure(hey, envoy, name, params)) for name in order}
                out["rounds"].append(runs)
                log(
                    f"round {i + 1}/{params.rounds}: "
                    + ", ".join(f"{n} {r['cpu_us_per_request']:.0f}" for n, r in runs.items())
                )
        except (RuntimeError, OSError) as exc:
            out["error"] = str(exc)
        finally:
            _stop(envoy)
    out["load_average_after"] = os.getloadavg()
    if out["rounds"]:
        out["summary"] = _summary(out["rounds"], names, params.repeat)
    return out


def probe_table(result: dict[str, Any]) -> Table:
    params = result.get("parameters") or {}
    load = result.get("load_average_before") or ()
    title = (
        f"stats logger cost: Envoy CPU µs per request, {params.get('rounds')} rounds x "
        f"{params.get('duration_s')} s, hey closed loop on {params.get('connections')} "
        f"connections, {params.get('response_bytes')} B direct responses"
    )
    caption = (
        "median \\[min-max] over the rounds; stats loggers configured "
        f"{params.get('repeat', 1)} times over, 'per copy' divides by that; "
        "load average before: " + " ".join(f"{x:.2f}" for x in load)
    )
    table = Table(title=title, caption=caption)
    columns = ("variant", "CPU µs/req", "added over none", "per copy", "req/s", "non-200")
    for column in columns:
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, entry in (result.get("summary") or {}).items():
        table.add_row(
            name,
            f"{entry['median']:.1f} \\[{entry['min']:.1f}-{entry['max']:.1f}]",
            f"{entry.get('added_us', 0.0):+.1f}",
            f"{entry.get('added_us_per_copy', 0.0):+.1f}",
            f"{entry['requests_per_s']:.0f}",
            str(entry["non_200"]),
        )
    if result.get("error"):
        table.add_row("[red]error[/red]", result["error"][-300:])
    return table


def main(argv: Sequence[str]) -> int:
    defaults = ProbeParams()
    parser = argparse.ArgumentParser(prog="python -m bench.stats_tags_cost")
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--duration", type=float, default=defaults.duration_s)
    parser.add_argument("--repeat", type=int, default=defaults.repeat)
    parser.add_argument("--variant", action="append", default=[], choices=VARIANTS)
    parser.add_argument("--name", default="stats_tags_cost", help="result file name")
    args = parser.parse_args(argv)
    params = ProbeParams(
        rounds=args.rounds,
        duration_s=args.duration,
        repeat=args.repeat,
        variants=tuple(args.variant),
    )
    result = run_probe(params, log=lambda m: print(m, file=sys.stderr, flush=True))
    payload = {"machine": machine_info(_REPO), "timestamp": utc_timestamp(), "results": result}
    path = write_result(args.name, payload)
    print_table(Console(), probe_table(result))
    print(f"wrote {path}")
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
