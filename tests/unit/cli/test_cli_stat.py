"""``pilotfish stat``: rows from Prometheus' answers (a real HTTP server in the test)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from click.testing import CliRunner

from pilotfish.cli.stat import collect, stat


def _vector(value: str) -> dict[str, object]:
    metric = {"destination_workload": "reviews-v1", "destination_workload_namespace": "default"}
    return {"metric": metric, "value": [0, value]}


class _Prometheus(BaseHTTPRequestHandler):
    """Answers like Prometheus' /api/v1/query for the queries ``collect`` sends."""

    queries: list[str] = []
    times: set[str] = set()

    def do_GET(self) -> None:
        params = parse_qs(urlparse(self.path).query)
        query = params["query"][0]
        type(self).queries.append(query)
        type(self).times.add(params["time"][0])
        if query.startswith("histogram_quantile(0.5,"):
            value = "4"
        elif query.startswith("histogram_quantile"):
            value = "9"
        elif 'response_code!~"5.."' in query:
            value = "1.5"
        else:
            value = "2"
        body = json.dumps({"status": "success", "data": {"result": [_vector(value)]}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Prometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_rows_combine_rate_success_and_percentiles(prometheus: str) -> None:
    _Prometheus.times.clear()
    [row] = collect(prometheus, "default", "30s")
    assert len(_Prometheus.times) == 1  # one evaluation instant for the whole table
    assert (row.workload, row.rps, row.success, row.p50, row.p99) == ("reviews-v1", 2, 0.75, 4, 9)
    assert all("[30s]" in q for q in _Prometheus.queries[-5:])
    assert all('destination_workload_namespace="default"' in q for q in _Prometheus.queries[-5:])


def test_table_and_json_output(prometheus: str) -> None:
    out = CliRunner().invoke(stat, ["--prometheus", prometheus]).output
    assert "reviews-v1" in out and "75.00%" in out and "9ms" in out
    rows = json.loads(CliRunner().invoke(stat, ["--prometheus", prometheus, "-o", "json"]).output)
    assert rows[0]["success_rate"] == 0.75


def test_unreachable_prometheus_is_a_clear_error() -> None:
    result = CliRunner().invoke(stat, ["--prometheus", "http://127.0.0.1:1"])
    assert result.exit_code != 0
    assert "cannot query Prometheus at http://127.0.0.1:1" in result.output
