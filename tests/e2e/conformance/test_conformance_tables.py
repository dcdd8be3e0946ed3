"""The conformance harness's parts that need no mesh: case data, comparisons, the table.

(No root needed: these run with the unit tests' speed.)
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from cases import CORE, INFRA, Expect
from cases_extended import EXTENDED
from cases_gateway_tls import GATEWAY_TLS_CASES
from cases_grpc import G1, G2, GRPC_CASES, GrpcExpect
from cases_headers import HEADER_CASES
from cases_mesh import MESH_CASES
from cases_more import MORE_CASES, MORE_MESH_CASES
from cases_routing import ROUTING_CASES
from cases_status import STATUS_CASES
from cases_tls import TLS_CASES, TLS_GRPC_CASES
from grpc import StatusCode
from harness import Answer, check_expect, compare
from harness_grpc import compare_grpc
from inventory import GATEWAY_GRPC, GATEWAY_HTTP, MESH_HTTP
from suite_tls import SUITE

from pilotfish.api.analyze import analyze_paths
from pilotfish.samples.conformance_grpc_echo import Answer as GrpcAnswer
from pilotfish.samples.conformance_grpc_echo import full_method
from report import FAIL, NOT_RUN, PASS, Outcome, counts, render

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tests" / "testdata" / "gateway-api-conformance"
CASES = CORE + STATUS_CASES + EXTENDED + HEADER_CASES + MORE_CASES + ROUTING_CASES + TLS_CASES
CASES += GATEWAY_TLS_CASES


def test_every_case_is_an_upstream_test_of_its_level() -> None:
    levels = {name: core for name, core, _ in GATEWAY_HTTP}
    for case in CASES:
        assert case.name in levels, case.name
        assert levels[case.name] is case.core, case.name
    mesh_levels = {name: core for name, core, _ in MESH_HTTP}
    for case in MESH_CASES + MORE_MESH_CASES:
        assert mesh_levels.get(case.name) is case.core, case.name
    names = [c.name for c in CASES + MESH_CASES + MORE_MESH_CASES]
    assert len(set(names)) == len(names)


def test_every_case_manifest_is_vendored_and_analyzes_cleanly(tmp_path: Path) -> None:
    paths = [
        DATA / "base-manifests.yaml",
        *(DATA / "tests" / f for c in CASES for f in c.manifests),
    ]
    for path in paths:
        assert path.exists(), path
        (tmp_path / path.name).write_text(path.read_text().replace("{GATEWAY_CLASS_NAME}", "istio"))
    # Base and each test's manifests together, as the harness applies them.
    for case in CASES:
        files = [tmp_path / "base-manifests.yaml", *(tmp_path / f for f in case.manifests)]
        found = analyze_paths([str(f) for f in files])
        assert [d.format() for d in found if d.is_error] == [], case.name


def _echo(pod: str, path: str, **extra: object) -> Answer:
    body = {"pod": pod, "namespace": INFRA, "path": path, "method": "GET", "host": "x", **extra}
    return Answer(200, {}, json.dumps(body).encode())


@pytest.mark.parametrize(
    ("expect", "answer", "why"),
    [
        (Expect("/a", backend="infra-backend-v1"), _echo("infra-backend-v1-0", "/a"), None),
        (
            Expect("/a", backend="infra-backend-v1"),
            _echo("infra-backend-v2-0", "/a"),
            "answered by gateway-conformance-infra/infra-backend-v2-0",
        ),
        (Expect("/a", status=404), Answer(200, {}, b""), "status 200, want 404"),
        (
            Expect("/p/x", backend="infra-backend-v1", seen_path="/x"),
            _echo("infra-backend-v1-1", "/p/x"),
            "backend saw path '/p/x', want '/x'",
        ),
        (
            Expect("/", backend="infra-backend-v1", seen_headers=(("X-A", "1,2"),)),
            _echo("infra-backend-v1-1", "/", headers={"X-A": ["1", "2"]}),
            None,
        ),
        (
            Expect("/", backend="infra-backend-v1", absent_headers=("X-Gone",)),
            _echo("infra-backend-v1-1", "/", headers={"X-Gone": ["v"]}),
            "backend saw X-Gone: 'v', want it absent",
        ),
        (
            Expect("/r", status=302, location=("https", "example.org", "", "")),
            Answer(302, {"location": "https://example.org/r"}, b""),
            None,
        ),
        (
            Expect("/r", status=302, location=("", "", "", "/new")),
            Answer(302, {"location": "http://example.com/old"}, b""),
            "Location 'http://example.com/old': path '/old', want '/new'",
        ),
        # Unset expectations are the request's own: its scheme and path.
        (
            Expect("/keep?q=1", status=302, location=("", "example.org", "", "")),
            Answer(302, {"location": "https://example.org/keep"}, b""),
            "Location 'https://example.org/keep': scheme 'https', want 'http'",
        ),
        (
            Expect("/keep", status=302, location=("", "example.org", "", "")),
            Answer(302, {"location": "http://example.org/other"}, b""),
            "Location 'http://example.org/other': path '/other', want '/keep'",
        ),
        # An unset port must be the scheme's default or absent.
        (
            Expect("/p", status=302, location=("", "", "", "")),
            Answer(302, {"location": "http://example.com:8080/p"}, b""),
            "Location 'http://example.com:8080/p': port '8080'",
        ),
        (
            Expect("/p", status=302, location=("", "", "", "")),
            Answer(302, {"location": "http://example.com:80/p"}, b""),
            None,
        ),
        (
            Expect("/p", status=302, location=("", "", "8083", "")),
            Answer(302, {"location": "http://example.com/p"}, b""),
            "Location 'http://example.com/p': port '', want '8083'",
        ),
        # Upstream's StatusCodes, ValidHeaderValues and IgnoreWhitespace (CORS).
        (Expect("/c", statuses=(200, 204)), Answer(204, {}, b""), None),
        (Expect("/c", statuses=(200, 204)), Answer(403, {}, b""), "status 403, want 200 or 204"),
        (
            Expect("/c", valid_response_headers=(("A-C-M", ("GET, PUT", "PUT, GET")),)),
            Answer(200, {"a-c-m": "PUT,GET"}, b""),
            "response A-C-M: 'PUT,GET', want one of",
        ),
        (
            Expect(
                "/c",
                valid_response_headers=(("A-C-M", ("GET, PUT", "PUT, GET")),),
                ignore_whitespace=True,
            ),
            Answer(200, {"a-c-m": "PUT,GET"}, b""),
            None,
        ),
        (
            Expect("/c", valid_response_headers=(("A-C-O", ("*",)),)),
            Answer(200, {}, b""),
            "response A-C-O: None, want one of",
        ),
        # A preflight the Gateway must answer itself.
        (
            Expect("/c", method="OPTIONS", not_from_backend=True),
            _echo("infra-backend-v1-0", "/c"),
            "answered by the backend gateway-conformance-infra/infra-backend-v1-0",
        ),
        (Expect("/c", method="OPTIONS", not_from_backend=True), Answer(200, {}, b""), None),
    ],
)
def test_compare_is_upstream_s_check(expect: Expect, answer: Answer, why: str | None) -> None:
    got = compare(expect, answer)
    if why is None:
        assert got is None
    else:
        assert got is not None and got.startswith(why), got


def test_table_lists_every_upstream_test_with_its_outcome() -> None:
    outcomes = {"HTTPRouteMatching": Outcome(PASS), "HTTPRouteWeight": Outcome(FAIL, "a | b")}
    profiles = {"GATEWAY-HTTP": GATEWAY_HTTP, "MESH-HTTP": MESH_HTTP}
    text = render(profiles, outcomes, {"MESH-HTTP": "no client pods"}, "# T\n")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == len(GATEWAY_HTTP) + len(MESH_HTTP) + 2  # + two header rows
    assert "| HTTPRouteMatching | core | pass |  |" in text
    assert "| HTTPRouteWeight | core | fail | a \\| b |" in text
    assert "| MeshBasic | core | not run | no client pods |" in text
    tally = counts(GATEWAY_HTTP, outcomes)
    assert tally["core"][PASS] == 1 and tally["core"][FAIL] == 1
    assert tally["core"][NOT_RUN] == sum(c for _, c, _ in GATEWAY_HTTP) - 2


def test_every_grpc_case_is_an_upstream_gateway_grpc_test_with_clean_manifests(
    tmp_path: Path,
) -> None:
    levels = {name: core for name, core, _ in GATEWAY_GRPC}
    base = tmp_path / "base-manifests.yaml"
    base.write_text((DATA / "base-manifests.yaml").read_text().replace("{GATEWAY_CLASS_NAME}", "x"))
    for case in GRPC_CASES + TLS_GRPC_CASES:
        assert levels.get(case.name) is case.core, case.name
        files = [base]
        for name in case.manifests:
            text = (DATA / "tests" / name).read_text()
            (tmp_path / name).write_text(text.replace("{GATEWAY_CLASS_NAME}", "x"))
            files.append(tmp_path / name)
        found = analyze_paths([str(f) for f in files])
        assert [d.format() for d in found if d.is_error] == [], case.name
    # Every core test of the profile is ported.
    assert {n for n, core, _ in GATEWAY_GRPC if core} <= {c.name for c in GRPC_CASES}


def _grpc_echo(*headers: tuple[str, str]) -> GrpcAnswer:
    return GrpcAnswer(StatusCode.OK, full_method("Echo"), "", INFRA, f"{G1}-0", headers)


@pytest.mark.parametrize(
    ("expect", "answer", "why"),
    [
        (
            GrpcExpect("Echo", backend=G1),
            GrpcAnswer(StatusCode.OK, full_method("Echo"), "", INFRA, f"{G1}-abc"),
            None,
        ),
        (
            GrpcExpect("EchoTwo", backend=G2),
            GrpcAnswer(StatusCode.OK, full_method("Echo"), "", INFRA, f"{G2}-abc"),
            "echo saw method",
        ),
        (
            GrpcExpect("Echo", backend=G2),
            GrpcAnswer(StatusCode.OK, full_method("Echo"), "", INFRA, f"{G1}-abc"),
            "answered by pod 'grpc-infra-backend-v1-abc'",
        ),
        (
            GrpcExpect("Echo", backend=G1),
            GrpcAnswer(StatusCode.OK, full_method("Echo"), "", "other", f"{G1}-abc"),
            "answered in namespace 'other'",
        ),
        (
            GrpcExpect("Echo", code="UNIMPLEMENTED"),
            GrpcAnswer(StatusCode.OK, full_method("Echo"), "", INFRA, f"{G1}-abc"),
            "code OK, want UNIMPLEMENTED",
        ),
        (GrpcExpect("Echo", code="UNIMPLEMENTED"), GrpcAnswer(StatusCode.UNIMPLEMENTED), None),
        (
            GrpcExpect("Echo", backend=G1),
            GrpcAnswer(StatusCode.UNAVAILABLE, details="refused"),
            "code UNAVAILABLE (refused), want OK",
        ),
        # Headers the echo saw: values of one name joined, absent ones absent.
        (
            GrpcExpect("Echo", backend=G1, seen=(("x-a", "1,2"),), unseen=("x-gone",)),
            _grpc_echo(("x-a", "1"), ("x-a", "2")),
            None,
        ),
        (
            GrpcExpect("Echo", backend=G1, seen=(("x-a", "1,2"),)),
            _grpc_echo(("x-a", "1")),
            "backend saw x-a: '1', want '1,2'",
        ),
        (
            GrpcExpect("Echo", backend=G1, unseen=("x-gone",)),
            _grpc_echo(("x-gone", "v")),
            "backend saw x-gone: 'v', want it absent",
        ),
    ],
)
def test_compare_grpc_is_upstream_s_check(
    expect: GrpcExpect, answer: GrpcAnswer, why: str | None
) -> None:
    got = compare_grpc(expect, answer)
    if why is None:
        assert got is None
    else:
        assert got is not None and got.startswith(why), got


def test_table_has_the_gateway_grpc_profile() -> None:
    outcomes = {"GRPCRouteWeight": Outcome(PASS)}
    reasons = {"GATEWAY-GRPC": "later", "BackendTLSPolicyGRPCRoute": "no TLS echo"}
    text = render({"GATEWAY-GRPC": GATEWAY_GRPC}, outcomes, reasons, "# T\n")
    assert "## GATEWAY-GRPC" in text
    assert "| GRPCRouteWeight | core | pass |  |" in text
    assert "| GRPCRouteNamedRule | extended (GRPCRouteNamedRouteRule) | not run | later |" in text
    assert (
        "| BackendTLSPolicyGRPCRoute | extended (BackendTLSPolicy) | not run | no TLS echo |"
        in text
    )


def _refusing(expect: Expect) -> Answer:
    raise ssl.SSLError("tlsv13 alert certificate required")


def test_a_refused_expectation_passes_on_errors_only() -> None:
    refused = Expect("/", refused=True)
    assert check_expect(_refusing, refused, deadline=0.0) is None
    answered = check_expect(lambda e: Answer(403, {}, b""), refused, deadline=0.0)
    assert answered == "answered 403, want a refusal"
    # An ordinary expectation still fails on an error.
    why = check_expect(_refusing, Expect("/"), deadline=0.0)
    assert why is not None and why.startswith("request failed")


def test_the_backend_must_have_seen_the_client_certificate() -> None:
    pair = SUITE[0].checks_client
    other = SUITE[0].client
    assert pair is not None and other is not None
    expect = Expect("/", backend="b", seen_client_cert=pair.cert_pem)
    der = ssl.PEM_cert_to_DER_cert(pair.cert_pem.decode())
    seen = {"tls": {"peerCertificates": [ssl.DER_cert_to_PEM_cert(der)]}}
    assert compare(expect, _echo("b-0", "/", **seen)) is None
    wrong = {"tls": {"peerCertificates": [other.cert_pem.decode()]}}
    assert compare(expect, _echo("b-0", "/", **wrong)) is not None
    assert compare(expect, _echo("b-0", "/")) is not None
