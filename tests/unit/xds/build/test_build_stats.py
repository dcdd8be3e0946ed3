"""Istio's metrics as Envoy stats access loggers (xds/build/stats.py)."""

from __future__ import annotations

from collections.abc import Mapping

from envoy.extensions.access_loggers.stats.v3 import stats_pb2

from pilotfish import ir
from pilotfish.packed_labels import PACKED_TAG, SEPARATOR, unpack
from pilotfish.peer_labels import OWN_VARIABLES
from pilotfish.xds.build.stats import build_http_stats_logs, build_tcp_stats_logs

# Unpacking with each variable standing for its operator gives the label formats.
_AS_OPERATORS = {var: f"%ENVIRONMENT({var})%" for var in OWN_VARIABLES}


def _configs(logs: list) -> list[stats_pb2.Config]:  # type: ignore[type-arg]
    out = []
    for log in logs:
        config = stats_pb2.Config()
        assert log.typed_config.Unpack(config)
        out.append(config)
    return out


def _tags(stat: stats_pb2.Config.Stat) -> dict[str, str]:
    """Label -> format of a stat (its one packed tag unpacked)."""
    (tag,) = stat.tags
    assert tag.name == PACKED_TAG
    return dict(unpack(tag.value_format, _AS_OPERATORS))


def test_each_stat_has_one_packed_tag_and_envoy_never_reads_the_proxys_own_facts() -> None:
    for reporter in ("destination", "source"):
        for config in _configs(build_http_stats_logs(ir.Metrics(reporter))):  # type: ignore[arg-type]
            for stat in [c.stat for c in config.counters] + [h.stat for h in config.histograms]:
                assert [t.name for t in stat.tags] == [PACKED_TAG]
                assert "%ENVIRONMENT(" not in stat.tags[0].value_format


def test_destination_trusts_peer_headers_only_over_mtls() -> None:
    logs = build_http_stats_logs(ir.Metrics("destination"))
    # (mTLS, plaintext) x (HTTP, gRPC), each behind its own filter.
    assert len(logs) == 4 and all(log.HasField("filter") for log in logs)
    mtls_http, _mtls_grpc, plain_http, _plain_grpc = _configs(logs)
    trusted = _tags(mtls_http.counters[0].stat)
    # The server proxy moved the caller proxy's record header into metadata: one
    # field gives every source_* label but the principal.
    fields = mtls_http.counters[0].stat.tags[0].value_format.split(SEPARATOR)
    assert "source~%DYNAMIC_METADATA(pilotfish.peer:x-pilotfish-peer)%" in fields
    assert not any(f.startswith("source_workload") for f in fields)
    assert trusted["destination_service_name"] == (
        "%DYNAMIC_METADATA(pilotfish.peer:x-pilotfish-destination-service-name)%"
    )
    assert trusted["source_principal"] == "%DOWNSTREAM_PEER_URI_SAN%"
    assert trusted["connection_security_policy"] == "mutual_tls"
    assert trusted["destination_workload"] == "%ENVIRONMENT(PILOTFISH_WORKLOAD_NAME)%"
    plain = _tags(plain_http.counters[0].stat)
    assert plain["source_workload"] == "unknown"
    assert plain["source_principal"] == "unknown"
    assert plain["connection_security_policy"] == "none"
    assert not any("%REQ(" in v or "%DYNAMIC_METADATA(" in v for v in plain.values())


def test_http_metrics_have_istio_names_units_and_values() -> None:
    (config,) = _configs(build_http_stats_logs(ir.Metrics("source")))[:1]
    assert config.stat_prefix == "istio"
    assert [c.stat.name for c in config.counters] == ["requests_total"]
    assert config.counters[0].value_fixed.value == 1
    hists = {h.stat.name: (h.value_format, h.unit) for h in config.histograms}
    unit = stats_pb2.Config.Histogram.Unit
    assert hists == {
        "request_duration_milliseconds": ("%DURATION%", unit.Milliseconds),
        "request_bytes": ("%BYTES_RECEIVED%", unit.Bytes),
        "response_bytes": ("%BYTES_SENT%", unit.Bytes),
    }
    tags = _tags(config.counters[0].stat)
    assert tags["reporter"] == "source"
    assert tags["connection_security_policy"] == "unknown"
    assert tags["source_workload"] == "%ENVIRONMENT(PILOTFISH_WORKLOAD_NAME)%"
    assert tags["request_protocol"] == "http"
    assert "grpc_response_status" not in tags


def test_grpc_variant_reports_grpc_status() -> None:
    grpc = _configs(build_http_stats_logs(ir.Metrics("source")))[1]
    tags = _tags(grpc.counters[0].stat)
    assert tags["request_protocol"] == "grpc"
    assert tags["grpc_response_status"] == "%GRPC_STATUS_NUMBER%"


def test_disabled_metrics_and_tag_overrides_are_honoured() -> None:
    overrides = (
        ir.MetricTagOverride("response_code", remove=True),
        ir.MetricTagOverride("user", value="%REQ(x-user)%"),
    )
    conf = ir.Metrics(
        "source",
        disabled=frozenset({"istio_request_bytes", "istio_response_bytes"}),
        tag_overrides=(("istio_requests_total", overrides),),
    )
    config = _configs(build_http_stats_logs(conf))[0]
    assert [h.stat.name for h in config.histograms] == ["request_duration_milliseconds"]
    counter = _tags(config.counters[0].stat)
    assert "response_code" not in counter and counter["user"] == "%REQ(x-user)%"
    # Other metrics keep their labels.
    assert "response_code" in _tags(config.histograms[0].stat)


def test_everything_disabled_leaves_no_logger() -> None:
    every = frozenset(
        {
            "istio_requests_total",
            "istio_request_duration_milliseconds",
            "istio_request_bytes",
            "istio_response_bytes",
            "istio_request_messages_total",
            "istio_response_messages_total",
        }
    )
    assert build_http_stats_logs(ir.Metrics("destination", disabled=every)) == []


def test_tcp_counts_opened_when_connected_and_the_rest_at_the_end() -> None:
    logs = build_tcp_stats_logs(ir.Metrics("destination"))
    names = [[c.stat.name for c in cfg.counters] for cfg in _configs(logs)]
    assert (
        names
        == [
            ["tcp_connections_opened_total"],
            ["tcp_connections_closed_total", "tcp_sent_bytes_total", "tcp_received_bytes_total"],
        ]
        * 2
    )
    end = _configs(logs)[1].counters
    assert end[1].value_format == "%BYTES_SENT%" and end[2].value_format == "%BYTES_RECEIVED%"
    assert _tags(end[0].stat)["request_protocol"] == "tcp"


def test_the_server_takes_every_peer_header_off_the_request() -> None:
    from pilotfish.peer_labels import DEST_SERVICE_HEADER, PEER_HEADER, PEER_HEADERS
    from pilotfish.xds.build.peer_headers import build_peer_headers, build_peer_metadata

    rules = {r.header: r for r in build_peer_metadata().request_rules}
    assert {PEER_HEADER, DEST_SERVICE_HEADER} <= rules.keys()
    assert all(r.remove for r in rules.values())
    assert {r.on_header_present.metadata_namespace for r in rules.values()} == {"pilotfish.peer"}
    # The client sets the record and removes the per-fact headers an app may send.
    mutations = build_peer_headers().mutations.request_mutations
    assert mutations[0].append.header.key == PEER_HEADER
    assert mutations[0].append.header.value == "%ENVIRONMENT(PILOTFISH_PEER)%"
    assert {m.remove for m in mutations[1:]} == {h for _s, h, _v in PEER_HEADERS}


def test_grpc_requests_also_count_their_messages() -> None:
    for reporter in ("destination", "source"):
        configs = _configs(build_http_stats_logs(ir.Metrics(reporter)))  # type: ignore[arg-type]
        for config in configs:
            counters = {c.stat.name: c.value_format for c in config.counters}
            grpc = _tags(config.counters[0].stat)["request_protocol"] == "grpc"
            if grpc:
                assert counters["request_messages_total"] == (
                    "%DYNAMIC_METADATA(pilotfish.grpc:request_messages)%"
                )
                assert "response_messages_total" in counters
            else:
                assert "request_messages_total" not in counters


def _requests_printed(
    conf: ir.Metrics, peer_certified: bool, printed: Mapping[str, str]
) -> tuple[stats_pb2.Config, dict[str, str]]:
    """The request counter's labels when Envoy prints ``printed`` for its operators."""
    config = _configs(build_http_stats_logs(conf, peer_certified=peer_certified))[0]
    (tag,) = config.counters[0].stat.tags
    value = tag.value_format
    for operator, text in printed.items():
        value = value.replace(operator, text)
    return config, dict(unpack(value, {}))


def test_overrides_of_labels_the_callers_record_gives() -> None:
    overrides = (
        ir.MetricTagOverride("source_app", remove=True),
        ir.MetricTagOverride("source_workload", value="%REQ(x-caller)%"),
    )
    conf = ir.Metrics("destination", tag_overrides=(("istio_requests_total", overrides),))
    record = "workload=pp,app=pp,version=v1"
    caller = "%DYNAMIC_METADATA(pilotfish.peer:x-pilotfish-peer)%"
    printed = {caller: record, "%REQ(x-caller)%": "me"}
    config, labels = _requests_printed(conf, True, printed)
    assert "source_app" not in labels
    assert labels["source_workload"] == "me"
    assert labels["source_version"] == "v1"
    # Other metrics take every source_* label from the record.
    other = dict(unpack(config.histograms[0].stat.tags[0].value_format, {}))
    assert {"source_app", "source_workload"} <= other.keys()


def test_overrides_of_labels_the_endpoints_record_gives() -> None:
    overrides = (
        ir.MetricTagOverride("destination_app", remove=True),
        ir.MetricTagOverride("destination_version", value="%REQ(x-version)%"),
    )
    conf = ir.Metrics("source", tag_overrides=(("istio_requests_total", overrides),))
    record = "ratings-v1;shop;ratings;v1;ratings;v1;Kubernetes"
    printed = {"%UPSTREAM_METADATA(istio:peer)%": record, "%REQ(x-version)%": "v9"}
    _config, labels = _requests_printed(conf, False, printed)
    assert "destination_app" not in labels
    assert labels["destination_version"] == "v9"
    assert labels["destination_workload"] == "ratings-v1"
    assert labels["destination_canonical_revision"] == "v1"
