"""The churn benchmark's pure parts: markers, the tracker, percentiles, windows, writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from bench.ads_delta_stream import SimDeltaResponse
from bench.ads_stream import sim_instance_ip
from bench.churn_markers import (
    MAX_MARKERS,
    MarkerTracker,
    change_slot,
    default_cluster_service,
    marker_address,
    marker_of,
    newest_marker,
    percentile,
    summarize,
)
from bench.config_gen import endpoint_address, generate_config, service_file
from bench.controlplane_churn import _Writer, churn_table, metric_value, window_summaries
from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2
from rich.console import Console

from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE


def _cla(name: str, *addresses: str) -> endpoint_pb2.ClusterLoadAssignment:
    lbs = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address=a, port_value=9080)
                )
            )
        )
        for a in addresses
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lbs)]
    )


def _eds(*resources: tuple[str, str, endpoint_pb2.ClusterLoadAssignment]) -> object:
    response = discovery_pb2.DeltaDiscoveryResponse(type_url=ENDPOINT_TYPE)
    for name, version, cla in resources:
        item = response.resources.add(name=name, version=version)
        item.resource.Pack(cla)
    return response


def _default(service: int) -> str:
    return f"outbound|9080||svc-{service}.default.svc.cluster.local"


def _subset(service: int) -> str:
    return f"outbound|9080|v1|svc-{service}.default.svc.cluster.local"


@pytest.mark.parametrize("k", [0, 1, 255, 256, 65535, 65536, 6000, MAX_MARKERS - 1])
def test_marker_addresses_round_trip(k: int) -> None:
    assert marker_of(marker_address(k)) == k


def test_other_addresses_are_not_markers() -> None:
    others = [endpoint_address(999, 3), endpoint_address(5, 0, block=11), sim_instance_ip(999)]
    others += ["127.128.0.1", "10.64.0.1", "127.64.0", "127.64.0.256", "::1", "127.64.0.x"]
    assert [marker_of(a) for a in others] == [None] * len(others)
    with pytest.raises(ValueError):
        marker_address(MAX_MARKERS)
    with pytest.raises(ValueError):
        marker_address(-1)


def test_changes_go_round_robin_over_services_then_endpoints() -> None:
    assert [change_slot(k, 3) for k in range(7)] == [
        (0, 0),
        (1, 0),
        (2, 0),
        (0, 1),
        (1, 1),
        (2, 1),
        (0, 2),
    ]
    assert change_slot(4 * 3, 3) == (0, 0)  # back to endpoint 0 after the fourth round


def test_newest_marker_of_an_assignment() -> None:
    assert newest_marker(_cla("c", endpoint_address(0, 0), endpoint_address(0, 1))) == -1
    cla = _cla("c", marker_address(7), endpoint_address(0, 1), marker_address(1007))
    assert newest_marker(cla) == 1007


def test_default_cluster_names_give_their_service() -> None:
    assert default_cluster_service(_default(42)) == 42
    assert default_cluster_service(_subset(42)) is None
    assert default_cluster_service("outbound|9080||other.default.svc.cluster.local") is None


def _tracker(services: int, streams: int, markers: int) -> MarkerTracker:
    tracker = MarkerTracker(services, streams)
    everything = tuple(n for s in range(services) for n in (_default(s), _subset(s)))
    tracker.begin(markers, [everything] * streams)
    return tracker


def test_a_change_completes_when_every_subscribed_proxy_acked_it() -> None:
    tracker = _tracker(services=2, streams=2, markers=4)
    assert tracker.expected == [2, 2]
    change0 = _cla(_default(0), marker_address(0), endpoint_address(0, 1))
    both = _eds((_default(0), "v1", change0), (_subset(0), "v1", change0))
    tracker.on_ack(0, both, 10.0)
    assert list(tracker.count) == [1, 0, 0, 0]  # the subset cluster holds it too: counted once
    assert tracker.complete_at[0] is None
    tracker.on_ack(1, both, 10.5)
    assert tracker.complete_at[0] == 10.5 and tracker.last_at[0] == 10.5
    assert tracker.parses == 2  # one parse per (name, version), shared by the streams
    assert tracker.completed() == 1


def test_a_version_holding_a_later_change_delivers_the_earlier_ones() -> None:
    tracker = _tracker(services=2, streams=1, markers=6)
    # Change 0 moved endpoint 0 of svc-0, change 2 endpoint 1: a proxy that only ever
    # sees the version after change 2 holds both.
    later = _cla(_default(0), marker_address(0), marker_address(2))
    tracker.on_ack(0, _eds((_default(0), "v2", later)), 3.0)
    assert list(tracker.count) == [1, 0, 1, 0, 0, 0]
    assert tracker.complete_at[:3] == [3.0, None, 3.0]
    # The same version again (a re-sent resource) counts nothing twice.
    tracker.on_ack(0, _eds((_default(0), "v2", later)), 4.0)
    assert list(tracker.count) == [1, 0, 1, 0, 0, 0]


def test_other_types_and_markerless_versions_count_nothing() -> None:
    tracker = _tracker(services=1, streams=1, markers=1)
    cds = _eds((_default(0), "v1", _cla(_default(0), marker_address(0))))
    cds.type_url = CLUSTER_TYPE  # type: ignore[attr-defined]
    tracker.on_ack(0, cds, 1.0)
    tracker.on_ack(0, _eds((_default(0), "v0", _cla(_default(0), endpoint_address(0, 0)))), 1.0)
    assert list(tracker.count) == [0]
    untracked = MarkerTracker(1, 1)  # before begin(): nothing is counted
    untracked.on_ack(0, _eds((_default(0), "v1", _cla(_default(0), marker_address(0)))), 1.0)
    assert not untracked.active


def test_percentiles_interpolate_and_summaries_count_the_missing() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 100.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 101)
    summary = summarize([0.2, None, 0.1, 0.4, None])
    assert summary["changes"] == 5 and summary["converged"] == 3
    assert summary["never_converged"] == 2
    assert summary["p50_s"] == pytest.approx(0.2) and summary["max_s"] == 0.4


def test_windows_group_changes_by_write_time() -> None:
    written = [100.0, 100.5, 101.2, 102.9]
    windows = window_summaries(written, [0.1, 0.3, None, 0.2], start=100.0, window_s=1.0)
    assert [(w["from_s"], w["changes"], w["never_converged"]) for w in windows] == [
        (0.0, 2, 0),
        (1.0, 1, 1),
        (2.0, 1, 0),
    ]
    assert windows[0]["max_s"] == 0.3


def test_metric_value_reads_an_unlabelled_sample() -> None:
    text = (
        "# HELP pilotfish_xds_queued_responses x\n"
        "pilotfish_xds_queued_responses_total 9.0\n"
        "pilotfish_xds_queued_responses 12.0\n"
    )
    assert metric_value(text, "pilotfish_xds_queued_responses") == 12.0
    assert metric_value(text, "pilotfish_xds_push_pending") is None


def test_writer_moves_one_endpoint_per_change(tmp_path: Path) -> None:
    generate_config(tmp_path, 2)
    writer = _Writer(tmp_path, 2)
    for k in (0, 2, 8):  # svc-0: endpoint 0, endpoint 1, endpoint 0 again
        writer.write(k)
    docs = list(yaml.safe_load_all(service_file(tmp_path, 0).read_text()))
    addresses = [d["spec"]["address"] for d in docs if d["kind"] == "WorkloadEntry"]
    assert addresses == [
        marker_address(8),
        marker_address(2),
        endpoint_address(0, 2),
        endpoint_address(0, 3),
    ]
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_churn_table_renders_every_measure() -> None:
    summary = summarize([0.5, 0.7, None])
    result = {
        "parameters": {"services": 10, "proxies": 10, "rate": 100.0, "duration_s": 1.0},
        "results": {
            "convergence": summary,
            "first_window": {"from_s": 0.0, "to_s": 1.0, **summary},
            "writes": {"changes": 3, "achieved_rate": 99.0, "max_lateness_s": 0.01},
            "backlog": {"max_queued_responses": 4.0, "push_pending_fraction": 0.5},
            "work_during_writes": {"snapshots_count": 3.0, "pushes_count": 2.0},
        },
        "error": None,
    }
    console = Console(width=400, record=True)
    console.print(churn_table(result))
    text = console.export_text()
    assert "0.600 s" in text  # the p50 of the two that converged
    assert "never converged" in text and "50 %" in text and "3 / 2" in text


def test_the_simulators_light_responses_count_alike() -> None:
    # The simulator reads responses with their entries left serialized.
    tracker = _tracker(services=1, streams=2, markers=1)
    full = _eds((_default(0), "v1", _cla(_default(0), marker_address(0))))
    light = SimDeltaResponse.FromString(full.SerializeToString())  # type: ignore[attr-defined]
    assert isinstance(light.resources[0], bytes)
    tracker.on_ack(0, light, 1.0)
    tracker.on_ack(1, light, 2.0)
    assert tracker.complete_at == [2.0] and tracker.parses == 1
