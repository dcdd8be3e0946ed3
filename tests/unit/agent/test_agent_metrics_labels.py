"""Istio's labels packed into one Envoy tag (pilotfish.packed_labels) and
unpacked by the agent when it serves /stats/prometheus (agent/prom_text.py)."""

from __future__ import annotations

import re

from envoy.extensions.access_loggers.stats.v3 import stats_pb2
from prometheus_client.parser import text_string_to_metric_families

from pilotfish import ir
from pilotfish.agent.config import AgentConfig
from pilotfish.agent.prom_text import istio_names, merge_expositions
from pilotfish.agent.workload_env import workload_labels
from pilotfish.packed_labels import PACKED_TAG, SEPARATOR, pack, unpack
from pilotfish.peer_labels import (
    ENDPOINT_RECORD_KEY,
    UPSTREAM_METADATA_NAMESPACE,
    parse_peer_record,
    peer_record,
    workload_facts,
)
from pilotfish.xds.build.endpoints import build_lb_endpoint
from pilotfish.xds.build.stats import build_http_stats_logs

S = SEPARATOR
OWN = {"PILOTFISH_WORKLOAD_NAME": "reviews-v2", "PILOTFISH_WORKLOAD_APP": "reviews"}


def _envoy_value(packed: str) -> str:
    """A packed value as Envoy prints it in Prometheus text (``\\``, ``"``, newline escaped)."""
    return packed.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples
    ]


def test_labels_of_the_proxy_itself_become_markers_the_agent_fills() -> None:
    packed = pack(
        [
            ("reporter", "destination"),
            ("destination_workload", "%ENVIRONMENT(PILOTFISH_WORKLOAD_NAME)%"),
            # An override reading another of the proxy's variables names it.
            ("destination_app", "%ENVIRONMENT(PILOTFISH_WORKLOAD_NAME)%"),
            ("source_workload", "%DYNAMIC_METADATA(pilotfish.peer:x-pilotfish-peer-workload)%"),
            ("user", "%ENVIRONMENT(HOME)%"),  # not the proxy's facts: Envoy reads it
        ]
    )
    assert packed.split(S) == [
        "reporter=destination",
        "destination_workload@",
        "destination_app@PILOTFISH_WORKLOAD_NAME",
        "source_workload=%DYNAMIC_METADATA(pilotfish.peer:x-pilotfish-peer-workload)%",
        "user=%ENVIRONMENT(HOME)%",
    ]
    # What Envoy prints for it (its operators evaluated), unpacked with the agent's facts.
    printed = packed.replace("%DYNAMIC_METADATA(pilotfish.peer:x-pilotfish-peer-workload)%", "pp")
    printed = printed.replace("%ENVIRONMENT(HOME)%", "/root")
    assert unpack(printed, OWN) == [
        ("reporter", "destination"),
        ("destination_workload", "reviews-v2"),
        ("destination_app", "reviews-v2"),
        ("source_workload", "pp"),
        ("user", "/root"),
    ]


def test_a_fact_the_agent_lacks_is_unknown() -> None:
    assert unpack(f"destination_version@{S}reporter=source", {}) == [
        ("destination_version", "unknown"),
        ("reporter", "source"),
    ]


def test_a_value_holding_the_separator_stays_in_its_label() -> None:
    # Nothing Envoy prints can hold it (the codecs refuse control characters);
    # if one did, the other labels keep their names and values.
    printed = S.join(
        [
            "reporter=destination",
            f"source_workload=evil{S}destination_workload=forged",  # repeats a label below
            f"destination_service=a{S}b",  # not a label field at all
            f"source_app=x{S}x@NOT_A_VARIABLE",
            "destination_workload@",
            "response_code=200",
        ]
    )
    labels = unpack(printed, OWN)
    names = [name for name, _ in labels]
    assert names == [
        "reporter",
        "source_workload",
        "destination_workload",
        "destination_service",
        "source_app",
        "response_code",
    ]
    values = dict(labels)
    # Named twice: which one Envoy wrote cannot be told, so neither is believed.
    assert values["destination_workload"] == "unknown"
    assert values["destination_service"] == f"a{S}b"
    assert values["source_app"].startswith(f"x{S}x@NOT_A_VARIABLE")
    assert values["reporter"] == "destination" and values["response_code"] == "200"
    # The exposition stays valid Prometheus text.
    line = f'envoy_istio_requests_total{{{PACKED_TAG}="{_envoy_value(printed)}"}} 1'
    ((_name, parsed, _value),) = _samples(istio_names(line, OWN))
    assert list(parsed) == names


PACKED = _envoy_value(
    S.join(["reporter=destination", "destination_workload@", "response_code=200"])
)
ENVOY = f"""\
# HELP envoy_istio_requests_total requests
# TYPE envoy_istio_requests_total counter
envoy_istio_requests_total{{{PACKED_TAG}="{PACKED}"}} 3
# TYPE envoy_istio_request_duration_milliseconds histogram
envoy_istio_request_duration_milliseconds_bucket{{{PACKED_TAG}="{PACKED}",le="0.5"}} 1
envoy_istio_request_duration_milliseconds_bucket{{{PACKED_TAG}="{PACKED}",le="+Inf"}} 3
envoy_istio_request_duration_milliseconds_sum{{{PACKED_TAG}="{PACKED}"}} 4.5
envoy_istio_request_duration_milliseconds_count{{{PACKED_TAG}="{PACKED}"}} 3
# TYPE envoy_istio_plain_total counter
envoy_istio_plain_total{{reporter="source"}} 2
# TYPE envoy_server_live gauge
envoy_server_live{{}} 1
# TYPE envoy_cluster_upstream_rq counter
envoy_cluster_upstream_rq{{envoy_response_code="200",envoy_cluster_name="{PACKED_TAG}"}} 9
"""


def test_every_sample_of_istio_families_gets_istio_labels() -> None:
    text = istio_names(ENVOY, OWN)
    assert PACKED_TAG + "=" not in text
    dest = {"reporter": "destination", "destination_workload": "reviews-v2", "response_code": "200"}
    samples = _samples(text)
    assert ("istio_requests_total", dest, 3.0) in samples
    assert ("istio_request_duration_milliseconds_bucket", dest | {"le": "0.5"}, 1.0) in samples
    assert ("istio_request_duration_milliseconds_bucket", dest | {"le": "+Inf"}, 3.0) in samples
    assert ("istio_request_duration_milliseconds_sum", dest, 4.5) in samples
    assert ("istio_request_duration_milliseconds_count", dest, 3.0) in samples
    # The bucket bound stays last, after Istio's labels.
    assert 'response_code="200",le="0.5"} 1' in text
    # A family without a packed tag keeps its labels; Envoy's own stats are untouched.
    assert ("istio_plain_total", {"reporter": "source"}, 2.0) in samples
    assert "envoy_server_live{} 1" in text
    assert ENVOY.splitlines()[-1] in text.splitlines()


def test_help_and_type_lines_follow_the_rename() -> None:
    lines = istio_names(ENVOY, OWN).splitlines()
    assert lines[0] == "# HELP istio_requests_total requests"
    assert lines[1] == "# TYPE istio_requests_total counter"
    assert "# TYPE istio_request_duration_milliseconds histogram" in lines
    assert "# TYPE envoy_server_live gauge" in lines


def test_values_needing_escapes_come_out_escaped_once() -> None:
    tricky = 'a "quoted" \\ path\nnext'
    packed = _envoy_value(S.join(["reporter=source", f"destination_service={tricky}"]))
    text = istio_names(f'envoy_istio_requests_total{{{PACKED_TAG}="{packed}"}} 1\n', OWN)
    assert _samples(text) == [
        ("istio_requests_total", {"reporter": "source", "destination_service": tricky}, 1.0)
    ]


def test_builder_output_printed_by_envoy_comes_back_as_istios_labels() -> None:
    """The destination's mTLS logger, its operators replaced by what Envoy would print."""
    config = stats_pb2.Config()
    build_http_stats_logs(ir.Metrics("destination"), peer_certified=True)[0].typed_config.Unpack(
        config
    )
    (tag,) = config.counters[0].stat.tags
    # The caller's record, as the server proxy moved it into metadata.
    caller = peer_record(workload_facts("productpage-v1", "default", {"app": "productpage"}))
    printed = tag.value_format.replace(
        "%DYNAMIC_METADATA(pilotfish.peer:x-pilotfish-peer)%", caller
    )
    printed = re.sub(r"%[A-Z_]+(\([^)]*\))?%", "v", printed)
    agent = AgentConfig(
        name="ratings-v1-0",
        namespace="shop",
        workload="ratings-v1",
        labels=(("app", "ratings"), ("version", "v1")),
    )
    own = workload_labels(agent)
    line = f'envoy_istio_requests_total{{{tag.name}="{_envoy_value(printed)}"}} 5\n'
    ((name, labels, value),) = _samples(istio_names(line, own))
    assert (name, value) == ("istio_requests_total", 5.0)
    assert labels == {
        "reporter": "destination",
        "source_workload": "productpage-v1",
        "source_workload_namespace": "default",
        "source_app": "productpage",
        "source_version": "unknown",
        "source_canonical_service": "productpage",
        "source_canonical_revision": "latest",
        "source_cluster": "Kubernetes",
        "source_principal": "v",
        "destination_workload": "ratings-v1",
        "destination_workload_namespace": "shop",
        "destination_app": "ratings",
        "destination_version": "v1",
        "destination_canonical_service": "ratings",
        "destination_canonical_revision": "v1",
        "destination_cluster": "Kubernetes",
        "destination_principal": "unknown",  # no CA in this config
        "destination_service": "v",
        "destination_service_name": "v",
        "destination_service_namespace": "v",
        "connection_security_policy": "mutual_tls",
        "request_protocol": "http",
        "response_code": "v",
        "response_flags": "v",
    }


def _source_tag() -> stats_pb2.Config.Stat.Tag:
    """The packed tag of a client proxy's request counter (reporter ``source``)."""
    config = stats_pb2.Config()
    build_http_stats_logs(ir.Metrics("source"), peer_certified=False)[0].typed_config.Unpack(config)
    (tag,) = config.counters[0].stat.tags
    return tag


def _destination_labels(upstream_metadata: str) -> dict[str, str]:
    """The source reporter's destination_* labels when Envoy prints
    ``upstream_metadata`` for the endpoint's record (other operators: ``v``)."""
    tag = _source_tag()
    operator = f"%UPSTREAM_METADATA({UPSTREAM_METADATA_NAMESPACE}:{ENDPOINT_RECORD_KEY})%"
    assert operator in tag.value_format  # one lookup for the seven labels
    printed = tag.value_format.replace(operator, upstream_metadata)
    printed = re.sub(r"%[A-Z_]+(\([^)]*\))?%", "v", printed)
    line = f'envoy_istio_requests_total{{{tag.name}="{_envoy_value(printed)}"}} 1\n'
    ((_name, labels, _value),) = _samples(istio_names(line, OWN))
    return {k: v for k, v in labels.items() if k.startswith("destination_")}


def test_the_source_reads_the_destinations_labels_from_its_endpoint_record() -> None:
    facts = workload_facts("ratings-v1", "shop", {"app": "ratings", "version": "v1"})
    endpoint = build_lb_endpoint(
        ir.Endpoint("10.0.0.7", 9080, workload=tuple(sorted(facts.items())))
    )
    record = endpoint.metadata.filter_metadata[UPSTREAM_METADATA_NAMESPACE].fields
    assert list(record) == [ENDPOINT_RECORD_KEY]  # one field, not one per label
    value = record[ENDPOINT_RECORD_KEY].string_value
    assert value == "ratings-v1;shop;ratings;v1;ratings;v1;Kubernetes"
    labels = _destination_labels(value)
    assert {k: labels[k] for k in labels if k[len("destination_") :] in facts} == {
        f"destination_{suffix}": fact for suffix, fact in facts.items()
    }


def test_a_host_without_a_record_or_with_a_broken_one_is_unknown() -> None:
    # A passthrough destination has no endpoint metadata: Envoy prints "-".
    for printed in ("-", "", "a;b;c", "ratings-v1;shop;ratings;v1;ratings;v1;Kubernetes;extra"):
        labels = _destination_labels(printed)
        assert labels["destination_workload"] == "unknown", printed
        assert labels["destination_canonical_service"] == "unknown", printed
    # An empty fact is not believed; the others are.
    assert parse_peer_record("ratings-v1;shop;;v1;;v1;Kubernetes") == {
        "workload": "ratings-v1",
        "workload_namespace": "shop",
        "version": "v1",
        "canonical_revision": "v1",
        "cluster": "Kubernetes",
    }


def test_merged_exposition_keeps_unpacked_labels() -> None:
    merged = merge_expositions([istio_names(ENVOY, OWN), "# TYPE agent_up gauge\nagent_up 1\n"])
    names = {name for name, _labels, _value in _samples(merged)}
    assert {"istio_requests_total", "agent_up"} <= names
    assert PACKED_TAG + "=" not in merged


def test_a_record_gives_the_sides_labels_but_those_named_or_removed() -> None:
    record = "workload=pp-v1,app=pp,workload=forged,bogus=x,version"
    printed = S.join(
        ["reporter=destination", f"source~{record}", "source_app=%REQ", "source_cluster!"]
    )
    labels = unpack(printed, OWN)
    assert labels == [
        ("reporter", "destination"),
        ("source_workload", "pp-v1"),  # the first of a repeated fact
        ("source_workload_namespace", "unknown"),
        ("source_version", "unknown"),  # a fact without a value is not believed
        ("source_canonical_service", "unknown"),
        ("source_canonical_revision", "unknown"),
        ("source_app", "%REQ"),  # its own field, not the record's
    ]


def test_a_record_field_packs_and_a_removal_has_no_value() -> None:
    packed = pack(
        [("source~", "%DYNAMIC_METADATA(pilotfish.peer:x-pilotfish-peer)%"), ("source_app!", "")]
    )
    assert packed.split(S) == [
        "source~%DYNAMIC_METADATA(pilotfish.peer:x-pilotfish-peer)%",
        "source_app!",
    ]
    assert unpack("source_app!x", OWN) == []  # not a removal: nothing to continue either
