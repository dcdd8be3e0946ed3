"""wrk on a fixed schedule: the histogram, the parser, and a real wrk against a local server."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from bench.paced_wrk import Histogram, parse_paced, run_paced


def test_histogram_percentiles_are_exact_order_statistics() -> None:
    h = Histogram.of([(300, 1), (100, 2), (200, 0), (250, 1)])
    assert h.values_us == (100, 250, 300) and h.count == 4
    assert [h.at_rank(k) for k in (0, 1, 2, 3, 4, 9)] == [100, 100, 100, 250, 300, 300]
    assert h.percentile_us(50) == 100 and h.percentile_us(75) == 250
    assert h.percentile_us(100) == 300
    assert h.mean_us() == pytest.approx(187.5)


def test_parse_reads_the_script_lines_and_refuses_output_without_them() -> None:
    text = (
        "Running 1s test @ http://127.0.0.1:1/\n"
        "pilotfish-requests 3 1000500\n"
        "pilotfish-errors 0 0 0 1 0\n"
        "pilotfish-latency 120 2\n"
        "pilotfish-latency 95 1\n"
    )
    run = parse_paced(text)
    assert run.requests == 3 and run.duration_s == pytest.approx(1.0005)
    assert run.errors == {"connect": 0, "read": 0, "write": 0, "status": 1, "timeout": 0}
    assert run.histogram.values_us == (95, 120) and run.histogram.count == 3
    with pytest.raises(ValueError, match="no latencies"):
        parse_paced("unable to connect to 127.0.0.1:1 Connection refused\n")


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the benchmark's targets

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm holds
        # the body until the client's delayed ACK, 40 ms later.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        body = b"x" * 64
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_real_wrk_keeps_the_schedule_and_times_every_request(server_url: str) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk is not installed (Debian package wrk; `make test` installs it as root)")
    # 200 requests/s over 4 connections for 2 s: closed loop would send thousands.
    run = run_paced(wrk, server_url, [("Host", "echo:9080")], 200, 4, 2.0)
    assert sum(run.errors.values()) == 0
    assert 320 <= run.requests <= 440
    assert run.histogram.count >= run.requests
    assert 0 < run.histogram.percentile_us(50) < 100_000
