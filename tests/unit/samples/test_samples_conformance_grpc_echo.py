"""The conformance gRPC echo speaks upstream's GrpcEcho service and wire format."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest

from pilotfish.runtime.image_map import load_image_map
from pilotfish.runtime.ports import free_port
from pilotfish.samples import conformance_grpc_echo as echo
from pki import TestCa
from polling import poll

ENV = {"POD_NAME": "grpc-infra-backend-v1-abc", "NAMESPACE": "gateway-conformance-infra"}


@pytest.fixture
def target() -> Iterator[str]:
    server, port = echo.make_server(ENV, "127.0.0.1", 0)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


def test_echo_reports_method_context_authority_and_headers(target: str) -> None:
    answer = echo.call(
        target, "Echo", metadata=[("Version", "one"), ("color", "blue")], authority="bar.com"
    )
    assert answer.code == grpc.StatusCode.OK
    assert answer.method == "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/Echo"
    assert answer.namespace == "gateway-conformance-infra"
    assert answer.pod == "grpc-infra-backend-v1-abc"
    assert answer.authority == "bar.com"
    headers = dict(answer.headers)
    assert headers["version"] == "one" and headers["color"] == "blue"
    assert headers[":authority"] == "bar.com"


def test_echo_two_is_its_own_method(target: str) -> None:
    answer = echo.call(target, "EchoTwo")
    assert answer.code == grpc.StatusCode.OK
    assert answer.method == echo.full_method("EchoTwo")
    assert answer.method.endswith(".GrpcEcho/EchoTwo")


def test_echo_three_is_unimplemented(target: str) -> None:
    assert echo.call(target, "EchoThree").code == grpc.StatusCode.UNIMPLEMENTED


def test_unknown_method_is_refused_by_the_client(target: str) -> None:
    with pytest.raises(ValueError, match="EchoFour"):
        echo.call(target, "EchoFour")


def test_wire_format_is_upstreams_field_numbers() -> None:
    # EchoResponse{assertions{fully_qualified_method: "/m", context{pod: "p"}}}:
    # field 1 (len) { field 1 (len) "/m", field 4 (len) { field 4 (len) "p" } }.
    message = echo.messages()["EchoResponse"]()
    message.assertions.fully_qualified_method = "/m"
    message.assertions.context.pod = "p"
    assert message.SerializeToString() == b"\x0a\x09\x0a\x02/m\x22\x03\x22\x01p"


def test_refused_connection_is_an_answer_not_an_exception() -> None:
    answer = echo.call(f"127.0.0.1:{free_port()}", "Echo", timeout=1.0)
    assert answer.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_the_echo_basic_command_serves_grpc_when_asked() -> None:
    images = load_image_map("samples/image-maps/gateway-api-conformance.yaml")
    entry = images.lookup("registry.k8s.io/gateway-api/conformance/echo-basic:v0.1.0")
    assert entry is not None and entry.readiness_probe is not None
    assert entry.readiness_probe.tcp_socket is not None  # answered by both modes
    port = free_port()
    env = {**os.environ, **ENV, "HTTP_PORT": str(port), "GRPC_ECHO_SERVER": "1"}
    proc = subprocess.Popen(
        [sys.executable, *entry.command[1:]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answers() -> bool:
            return echo.call(f"127.0.0.1:{port}", "Echo", timeout=1.0).pod == ENV["POD_NAME"]

        poll(answers, "the gRPC echo to answer Echo", deadline=20)
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()  # never left behind, even when it ignores SIGTERM
            proc.wait()
            raise
    assert code == 0


def test_with_a_certificate_it_also_serves_tls_and_says_so() -> None:
    ca = TestCa()
    leaf = ca.issue("abc.example.com", dns=("abc.example.com",))
    server, port = echo.make_server(ENV, "127.0.0.1", 0)
    tls_port = echo.add_tls_port(
        server, "127.0.0.1", 0, leaf.cert_pem.encode(), leaf.key_pem.encode()
    )
    server.start()
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.ca_pem.encode())
        options = [("grpc.ssl_target_name_override", "abc.example.com")]
        with grpc.secure_channel(f"127.0.0.1:{tls_port}", credentials, options) as channel:
            secure = echo.call("", "Echo", channel=channel)
        assert secure.code == grpc.StatusCode.OK and secure.tls
        assert secure.pod == "grpc-infra-backend-v1-abc"
        plain = echo.call(f"127.0.0.1:{port}", "Echo")
        assert plain.code == grpc.StatusCode.OK and not plain.tls
    finally:
        server.stop(0)
