"""The gRPC and server-first TCP sample apps, run as processes the way pods run them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pilotfish.samples import grpc_echo, tcp_echo


def _start(module: str, version: str) -> Iterator[int]:
    env = {**os.environ, "HOSTNAME": f"{module}-host", "PORT": "0"}
    argv = [sys.executable, "-m", f"pilotfish.samples.{module}", "--service", "svc"]
    proc = subprocess.Popen(
        [*argv, "--version", version, "--host", "127.0.0.1"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        yield int(line.rsplit(":", 1)[1])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def grpc_port() -> Iterator[int]:
    yield from _start("grpc_echo", "v2")


@pytest.fixture
def tcp_port() -> Iterator[int]:
    yield from _start("tcp_echo", "v3")


def test_grpc_call_reports_who_answered(grpc_port: int) -> None:
    target = f"127.0.0.1:{grpc_port}"
    assert grpc_echo.call(target, b"12345") == {
        "service": "svc",
        "version": "v2",
        "hostname": "grpc_echo-host",
        "received": 5,
    }
    assert grpc_echo.health(target) is True


def test_grpc_health_of_nothing_is_false() -> None:
    assert grpc_echo.health("127.0.0.1:1", timeout=1) is False


def test_tcp_server_speaks_first_then_echoes(tcp_port: int) -> None:
    greeting, echoed = tcp_echo.exchange("127.0.0.1", tcp_port, "ping 1")
    assert (greeting.service, greeting.version, greeting.hostname) == (
        "svc",
        "v3",
        "tcp_echo-host",
    )
    assert echoed == "ping 1"


def test_parse_greeting_rejects_other_lines() -> None:
    with pytest.raises(ValueError):
        tcp_echo.parse_greeting(b"HTTP/1.1 200 OK\r\n")
