"""Sidecar against sidecarless: latency, memory and CPU of each data-plane mode (root only).

Theory of operation. Every measured mesh is a real ``pilotfish up --detach``
(transparent mode, mTLS on, as a user runs it) with its own state directory in
a temporary directory, bridge ``pfbm0``, pods in ``198.18.252.0/24``, service
VIPs in ``198.19.252.0/24`` and free ports for the control plane, xDS, the CA,
xDS over mTLS and the ingress gateway, so it never meets a user's mesh or the
e2e tests' lanes. Each mesh is brought ``down`` in a ``finally``; afterwards no
netns, link, ``/etc/netns`` entry or tagged iptables rule of ``pfbm0`` and no
process naming the state directory may be left (a leftover is an error, and is
removed). The caller holds ``/tmp/pilotfish-e2e.lock`` while this runs.

**Latency.** One chain, the same manifests for every row, one mesh per row:
hey in the ``client`` pod's netns (``ip netns exec``: captured as the pod's
app would be) -> Service ``front`` (``bench/chain_front.py``, which makes one
pooled ``GET http://back:9080/?size=1024`` per request) -> Service ``back``
(``pilotfish.samples.echo``, a 1 KB body); the ``client`` pod runs ``sleep
infinity``. hey paces 4 connections at 250 rps each (1000 rps), a warm-up run
first, then the measured run. Every pod must be ready before it, and the
client's proxy (its sidecar, or the node proxy's outbound chain for the pod)
must have counted the load after it, so no row can go around its proxies.

- ``direct``: the namespace labelled ``istio-injection: disabled``: no proxy,
  cluster IPs by the runtime's kube-proxy-style DNAT. The baseline.
- ``sidecar``: the default, a sidecar per pod, mTLS between them.
- ``ambient``: ``--dataplane ambient``, the node proxy, HBONE between pods.
- ``ambient+waypoint``: as ``ambient``, plus a waypoint Gateway (class
  ``istio-waypoint``) in ``chain`` and the Namespace labelled
  ``istio.io/use-waypoint: waypoint``, both in the manifest ``up`` is given (so
  no connection predates the label). The waypoint must be ready before the
  load, and its Envoy must have counted it: CONNECT streams on its HBONE
  listener, and its HTTP listener's requests grown by at least hey's (each
  hey request crosses it twice, client->front and front->back).

A row's added latency is its percentile minus direct's, per percentile.

**Reference.** Two Envoys from a static bootstrap written here, with mTLS
from a throwaway CA made here (``cryptography``): hey (on the host) -> client
Envoy (plain HTTP listener on 127.0.80.1) -> mTLS -> server Envoy (TLS
listener on 127.0.80.2, client certificate required) -> the echo app on
127.0.80.2; its baseline is hey straight to the app. That is one proxy pair;
the chain crosses two (client->front and front->back), so a mesh row's
``vs_reference`` is its added latency divided by twice the reference's added
latency, per percentile: 1.0 means the mesh costs what two hand-configured
mTLS Envoy pairs cost.

**Memory and CPU.** Bookinfo (``samples/bookinfo/bookinfo.yaml`` and its
gateway, as the e2e tests run them) in sidecar mode and in ambient mode. The
processes the mesh adds for the six pods are found from ``pilotfish status -o
json`` (``sidecar_pid``: a pod's agent, an ambient pod's readiness process,
the node proxy's agent) and their descendants in ``/proc`` (the Envoys); the
apps and the ingress gateway are in both modes and not counted. Memory is the
sum of ``Pss`` and ``Rss`` from ``/proc/<pid>/smaps_rollup`` (PSS shares the
pages six sidecar Envoys have in common among them, so it is the fair sum),
once the mesh is ready and again after the load; CPU is user+system seconds of
the same processes over a fixed load through the ingress gateway (hey on the
host to ``/productpage``). "Envoy only" counts the Envoy processes, "all mesh
processes" also the agents and readiness processes.

Targets (issue 14 item 5), judged and reported, never failing the run:
ambient added p50 <= 0.5 x sidecar's; ambient "all mesh processes" PSS after
the load <= 1/3 of sidecar's; ambient+waypoint added p50 <= sidecar's.

Where the parts are: this module has the parameters, the arithmetic (added
latency, the reference ratio, the targets) and ``run_modes``, which runs every
part and records a part that fails without stopping the rest;
``dataplane_modes_mesh`` the meshes, the chain rows and the Bookinfo runs;
``dataplane_modes_waypoint`` the waypoint's Gateway, readiness and counters;
``dataplane_modes_reference`` the two static Envoys; ``dataplane_modes_table``
the tables; ``dataplane_modes_base`` the constants they share.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.controlplane_scale import BenchmarkError
from bench.dataplane_modes_base import (
    AMBIENT_LATENCY_TARGET,
    CHAIN_PROXY_PAIRS,
    MEMORY_TARGET,
    PERCENTILES,
    WAYPOINT_LATENCY_TARGET,
    Log,
    ModesParams,
)
from bench.dataplane_modes_mesh import bookinfo_run, chain_row
from bench.dataplane_modes_reference import reference_rows
from bench.loadgen import find_hey

__all__ = [
    "FULL",
    "QUICK",
    "ModesParams",
    "added_latency",
    "judge_targets",
    "reference_ratio",
    "run_modes",
]

FULL = ModesParams(
    rate=1000,
    connections=4,
    response_bytes=1024,
    duration_s=20,
    warmup_s=5,
    ingress_rate=200,
    ingress_connections=4,
    ingress_duration_s=10,
)
QUICK = ModesParams(
    rate=1000,
    connections=4,
    response_bytes=1024,
    duration_s=5,
    warmup_s=2,
    ingress_rate=200,
    ingress_connections=4,
    ingress_duration_s=5,
)


# --- pure parts ----------------------------------------------------------------------------


def added_latency(
    row: Mapping[str, Any] | None, base: Mapping[str, Any] | None
) -> dict[str, float | None]:
    """Per percentile, ``row``'s latency minus ``base``'s (ms); None where either is missing."""
    row_ms = (row or {}).get("latency_ms") or {}
    base_ms = (base or {}).get("latency_ms") or {}
    out: dict[str, float | None] = {}
    for pct in PERCENTILES:
        a, b = row_ms.get(pct), base_ms.get(pct)
        out[pct] = None if a is None or b is None else float(a) - float(b)
    return out


def reference_ratio(
    added: Mapping[str, float | None],
    reference_added: Mapping[str, float | None],
    pairs: int = CHAIN_PROXY_PAIRS,
) -> dict[str, float | None]:
    """Per percentile, ``added / (pairs x reference_added)``.

    The reference is one proxy pair; a row crossing ``pairs`` of them is compared
    with that many. None when either side is missing or the reference added
    nothing measurable (<= 0: the ratio would be meaningless).
    """
    out: dict[str, float | None] = {}
    for pct in PERCENTILES:
        a, r = added.get(pct), reference_added.get(pct)
        out[pct] = None if a is None or r is None or r <= 0 else a / (pairs * r)
    return out


def _check(value: float | None, limit: float, what: str) -> dict[str, Any]:
    return {
        "what": what,
        "value": value,
        "limit": limit,
        "met": None if value is None else value <= limit,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def judge_targets(rows: Mapping[str, Any], memory: Mapping[str, Any]) -> dict[str, Any]:
    """The issue's targets from the rows and the memory runs: met, not met, or not measured.

    ``met`` is None (not measured) when a number is missing, e.g. a mode that
    could not run; a not-measured target is never "met".
    """
    sidecar = (rows.get("sidecar") or {}).get("added_ms") or {}
    ambient = (rows.get("ambient") or {}).get("added_ms") or {}
    latency = _check(
        _ratio(ambient.get("p50"), sidecar.get("p50")),
        AMBIENT_LATENCY_TARGET,
        "ambient L4 added p50 / sidecar added p50",
    )

    def total(mode: str, group: str, key: str) -> float | None:
        sample = ((memory.get(mode) or {}).get("after_load") or {}).get(group) or {}
        value = sample.get(key)
        return None if value is None else float(value)

    mem = _check(
        _ratio(total("ambient", "all", "pss_kib"), total("sidecar", "all", "pss_kib")),
        MEMORY_TARGET,
        "ambient / sidecar total PSS of all mesh processes for the 6 pods, after the load",
    )
    mem["envoy_only"] = _ratio(
        total("ambient", "envoy", "pss_kib"), total("sidecar", "envoy", "pss_kib")
    )
    mem["rss_all"] = _ratio(total("ambient", "all", "rss_kib"), total("sidecar", "all", "rss_kib"))
    waypoint = _check(
        _ratio(
            ((rows.get("ambient+waypoint") or {}).get("added_ms") or {}).get("p50"),
            sidecar.get("p50"),
        ),
        WAYPOINT_LATENCY_TARGET,
        "ambient+waypoint added p50 / sidecar added p50",
    )
    return {"ambient_added_p50": latency, "proxy_memory": mem, "waypoint_added_p50": waypoint}


# --- the run -----------------------------------------------------------------------------------


def run_modes(params: ModesParams, log: Log = print) -> dict[str, Any]:
    """Every row and both memory runs; a part that fails is recorded and the rest still runs."""
    if os.geteuid() != 0:
        return {"skipped": "needs root"}
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return {"error": f"{tool} is not installed"}
    hey = find_hey(install=True, log=log)
    if hey is None:
        return {"error": "hey is not installed"}
    errors: list[str] = []
    problems: list[str] = []
    rows: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    load_before = os.getloadavg()[0]

    def attempt(what: str, into: dict[str, Any], key: str, fn: Callable[[], Any]) -> None:
        try:
            into[key] = fn()
        except (BenchmarkError, RuntimeError, OSError, KeyError, ValueError) as exc:
            errors.append(f"{what}: {exc}")
            into[key] = {"error": str(exc)[-500:]}
            log(f"[red]{what} failed:[/red] {exc}")

    with tempfile.TemporaryDirectory(prefix="pf-bench-modes-") as tmp:
        work = Path(tmp)
        reference: dict[str, Any] = {}
        attempt(
            "reference",
            reference,
            "pair",
            lambda: reference_rows(work, params, hey, log),
        )
        pair = reference["pair"]
        if isinstance(pair, tuple):
            rows["reference_direct"], rows["reference"] = pair
        else:
            rows["reference_direct"] = rows["reference"] = pair
        for name in ("direct", "sidecar", "ambient", "ambient+waypoint"):
            attempt(
                name,
                rows,
                name,
                lambda n=name: chain_row(n, work, params, hey, log, problems),
            )
        for mode in ("sidecar", "ambient"):
            attempt(
                f"bookinfo {mode}",
                memory,
                mode,
                lambda m=mode: bookinfo_run(m, work, params, hey, log, problems),
            )

    ref_added = added_latency(rows.get("reference"), rows.get("reference_direct"))
    if "error" not in rows["reference"]:
        rows["reference"]["added_ms"] = ref_added
    for name in ("sidecar", "ambient", "ambient+waypoint"):
        row = rows.get(name) or {}
        if "error" in row or "error" in rows.get("direct", {}):
            continue
        row["added_ms"] = added_latency(row, rows["direct"])
        row["vs_reference"] = reference_ratio(row["added_ms"], ref_added)
    out: dict[str, Any] = {
        "rows": rows,
        "memory": memory,
        "targets": judge_targets(rows, memory),
        "reference_proxy_pairs": 1,
        "chain_proxy_pairs": CHAIN_PROXY_PAIRS,
        "load_average": [load_before, os.getloadavg()[0]],
        "cleanup_problems": problems,
    }
    if errors or problems:
        out["error"] = "; ".join(errors + problems)
    return out
