"""The data-plane modes benchmark's waypoint: its Gateway, its readiness, its counters.

The ``ambient+waypoint`` chain row (``dataplane_modes_mesh.chain_row``) adds
``waypoint_gateway`` to the chain's manifest, waits for ``waypoint_ready`` (the
pod row named after the Gateway, ``waypoint.chain``, ``dataplane: waypoint``,
in ``pilotfish status -o json``), and reads ``waypoint_stats`` around the measured run from
the waypoint's Envoy admin (127.0.0.1:15000 inside its netns, the one whose
name starts with the bench bridge's prefix and contains ``waypoint``);
``check_waypoint`` fails the row unless the waypoint carried the load.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

from bench.controlplane_scale import BenchmarkError
from bench.dataplane_modes_base import NETNS_PREFIX, WAYPOINT, WAYPOINT_STATS

__all__ = ["WAYPOINT", "check_waypoint", "waypoint_gateway", "waypoint_ready", "waypoint_stats"]


def waypoint_gateway(namespace: str) -> str:
    """A waypoint for ``namespace``'s services, as the e2e tests declare one."""
    return json.dumps(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {
                "name": WAYPOINT,
                "namespace": namespace,
                "labels": {"istio.io/waypoint-for": "service"},
            },
            "spec": {
                "gatewayClassName": "istio-waypoint",
                "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
            },
        }
    )


def waypoint_ready(pods: Iterable[Mapping[str, Any]], namespace: str) -> bool:
    """The waypoint's pod row is ready, as a waypoint.

    The row is named after the Gateway (``waypoint``), with ``.<namespace>`` after
    it outside ``default`` (``waypoint.chain``).
    """
    names = (WAYPOINT, f"{WAYPOINT}.{namespace}")
    row = next((p for p in pods if p["name"] in names), None)
    return bool(row and row.get("ready") and row.get("dataplane") == "waypoint")


def waypoint_stats() -> dict[str, int]:
    """``WAYPOINT_STATS`` of the waypoint's Envoy (admin on loopback in its netns)."""
    spaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=15, check=False
    ).stdout
    found = [
        line.split()[0]
        for line in spaces.splitlines()
        if line.startswith(NETNS_PREFIX) and WAYPOINT in line
    ]
    if len(found) != 1:
        raise BenchmarkError(f"expected one waypoint netns, found {found}")
    done = subprocess.run(
        ["ip", "netns", "exec", found[0], "curl", "-s", "-m", "5", "http://127.0.0.1:15000/stats"],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    out = dict.fromkeys(WAYPOINT_STATS, 0)
    for line in done.stdout.splitlines():
        key, _, value = line.partition(": ")
        if key in out and value.strip().isdigit():
            out[key] = int(value)
    return out


def check_waypoint(
    before: Mapping[str, int], after: Mapping[str, int], result: Mapping[str, Any]
) -> dict[str, Any]:
    """What the waypoint counted of the measured run; an error unless it carried all of it.

    Each of hey's requests crosses the waypoint twice (client -> front, front -> back,
    both services of the labelled namespace), so its HTTP listener counts about
    ``2 x`` hey's requests.
    """
    hbone, http = WAYPOINT_STATS
    sent = int(result.get("requests") or 0)
    grew = after[http] - before[http]
    out = {"hbone_streams_total": after[hbone], "http_requests": grew, "hey_requests": sent}
    out["per_hey_request"] = grew / sent if sent else None
    if after[hbone] <= 0 or sent <= 0 or grew < 0.95 * sent:
        raise BenchmarkError(f"the load did not all go through the waypoint: {out}")
    return out
