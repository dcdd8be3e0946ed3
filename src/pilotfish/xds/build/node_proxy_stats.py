"""Istio's TCP metrics from the node proxy, with the workload labels of its pods.

A sidecar reports about its own workload through labels the agent fills from
its environment (``xds/build/stats.py``); a node proxy serves many workloads,
so here each pod's facts are literals in the pod's own loggers (the same
packed tag, ``pilotfish.packed_labels``; the agent turns them into Istio's
``istio_tcp_*`` series when it serves the node proxy's metrics):

- ``reporter="destination"`` on each pod's HBONE connection manager, once per
  tunnelled connection when its CONNECT stream starts (opened) and when it
  ends (closed, bytes): the source is known by its verified certificate
  (``source_principal``) and by the CONNECT request's headers, which the
  source's node proxy sets (``connect_headers``: the source pod's record, the
  header sidecars send, and the service it called; Istio's ztunnel sends the
  same facts in ``baggage``); the destination by the pod's facts. Only a
  node proxy, holding the mesh certificate of a pod, opens HBONE streams, as
  only a sidecar sends the peer header under mTLS;
- ``reporter="source"`` on each outbound TCP proxy of a pod: when the upstream
  connection is up (opened) and when it ends (closed, bytes); the
  destination service is the chain's, the destination principal the verified
  peer certificate's.
"""

from __future__ import annotations

from typing import Any

from envoy.data.accesslog.v3 import accesslog_pb2 as data_pb2
from envoy.extensions.access_loggers.stats.v3 import stats_pb2
from google.protobuf import json_format

from pilotfish.ir.node_proxy import AmbientPod, OutboundDestination
from pilotfish.packed_labels import PACKED_TAG, RECORD, pack
from pilotfish.peer_labels import (
    DEST_SERVICE_HEADER,
    DEST_SERVICE_NAME_HEADER,
    DEST_SERVICE_NAMESPACE_HEADER,
    PEER_HEADER,
    PEER_SUFFIXES,
    UNKNOWN,
    peer_record,
)
from pilotfish.xds.build.stats import STAT_PREFIX, STATS_ACCESS_LOG

__all__ = ["connect_headers", "hbone_stats_logs", "outbound_stats_logs"]

_TYPE = "type.googleapis.com/"
_OPENED = (("tcp_connections_opened_total", ""),)
_ENDED = (
    ("tcp_connections_closed_total", ""),
    ("tcp_sent_bytes_total", "%BYTES_SENT%"),
    ("tcp_received_bytes_total", "%BYTES_RECEIVED%"),
)


def _side(side: str, facts: dict[str, str]) -> dict[str, str]:
    return {f"{side}_{suffix}": facts.get(suffix, UNKNOWN) for suffix in PEER_SUFFIXES}


def _log(labels: dict[str, str], metrics: tuple[tuple[str, str], ...], kind: int) -> dict[str, Any]:
    config = stats_pb2.Config(stat_prefix=STAT_PREFIX)
    packed = pack(labels.items())
    for name, value in metrics:
        stat = stats_pb2.Config.Stat(
            name=name, tags=[stats_pb2.Config.Tag(name=PACKED_TAG, value_format=packed)]
        )
        counter = config.counters.add(stat=stat)
        if value:
            counter.value_format = value
        else:
            counter.value_fixed.value = 1
    return {
        "name": STATS_ACCESS_LOG,
        "typed_config": {
            "@type": _TYPE + config.DESCRIPTOR.full_name,
            **json_format.MessageToDict(config),
        },
        "filter": {"log_type_filter": {"types": [data_pb2.AccessLogType.Name(kind)]}},
    }


def hbone_stats_logs(pod: AmbientPod) -> list[dict[str, Any]]:
    """The destination-side loggers of ``pod``'s HBONE connection manager."""
    facts = dict(pod.facts)
    labels = {
        "reporter": "destination",
        f"source{RECORD}": f"%REQ({PEER_HEADER})%",
        "source_principal": "%DOWNSTREAM_PEER_URI_SAN%",
        **_side("destination", facts),
        "destination_principal": pod.identity,
        "destination_service": f"%REQ({DEST_SERVICE_HEADER})%",
        "destination_service_name": f"%REQ({DEST_SERVICE_NAME_HEADER})%",
        "destination_service_namespace": f"%REQ({DEST_SERVICE_NAMESPACE_HEADER})%",
        "connection_security_policy": "mutual_tls",
        "request_protocol": "tcp",
        "response_flags": "%RESPONSE_FLAGS%",
    }
    return [
        _log(labels, _OPENED, data_pb2.DownstreamStart),
        _log(labels, _ENDED, data_pb2.DownstreamEnd),
    ]


def connect_headers(pod: AmbientPod, d: OutboundDestination) -> dict[str, str]:
    """The headers of ``pod``'s CONNECT requests towards ``d``: who calls, and which
    service it called (the CONNECT target names only the destination pod)."""
    return {
        PEER_HEADER: peer_record(dict(pod.facts)),
        DEST_SERVICE_HEADER: d.hostname or UNKNOWN,
        DEST_SERVICE_NAME_HEADER: d.hostname.split(".")[0] if d.hostname else UNKNOWN,
        DEST_SERVICE_NAMESPACE_HEADER: d.service_namespace or UNKNOWN,
    }


def outbound_stats_logs(pod: AmbientPod, d: OutboundDestination) -> list[dict[str, Any]]:
    """The source-side loggers of ``pod``'s TCP proxy towards ``d``."""
    labels = {
        "reporter": "source",
        **_side("source", dict(pod.facts)),
        "source_principal": pod.identity,
        **dict.fromkeys((f"destination_{s}" for s in PEER_SUFFIXES), UNKNOWN),
        "destination_principal": "%UPSTREAM_PEER_URI_SAN%",
        "destination_service": d.hostname or UNKNOWN,
        "destination_service_name": d.hostname.split(".")[0] if d.hostname else UNKNOWN,
        "destination_service_namespace": d.service_namespace or UNKNOWN,
        "connection_security_policy": "mutual_tls",
        "request_protocol": "tcp",
        "response_flags": "%RESPONSE_FLAGS%",
    }
    return [
        _log(labels, _OPENED, data_pb2.TcpUpstreamConnected),
        _log(labels, _ENDED, data_pb2.TcpConnectionEnd),
    ]
