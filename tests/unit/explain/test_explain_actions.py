"""Route actions as explained: retries, timeout, mirrors, CORS preflights, faults."""

from __future__ import annotations

from explain_helpers import REDIRECT, case_snapshot

from pilotfish.explain.engine import explain
from pilotfish.explain.request import ExplainRequest, parse_header
from pilotfish.explain.steps import Explanation


def _run(case: str, url: str, method: str = "GET", *headers: str) -> Explanation:
    request = ExplainRequest(url, method, tuple(parse_header(h) for h in headers))
    return explain(case_snapshot(case), REDIRECT, request)


def _reasons(result: Explanation, step: str) -> list[str]:
    return next(s for s in result.steps if s.step == step).reasons


def test_retries_timeout_and_mirrors() -> None:
    retry = _reasons(_run("vs-mirror-cors", "http://httpbin:8000/retry"), "action")
    assert "timeout: 3000 ms" in retry
    assert any(r.startswith("retries: 4 on ") and "500 ms per try" in r for r in retry), retry
    many = _reasons(_run("vs-mirror-cors", "http://httpbin:8000/many"), "action")
    assert [r for r in many if r.startswith("mirrored")] == [
        "mirrored to outbound|8000|v2|httpbin.default.svc.cluster.local (100 %)",
        "mirrored to outbound|8000|v1|httpbin.default.svc.cluster.local (5 %)",
    ]


def test_cors_preflight_is_answered_only_for_allowed_origins() -> None:
    ask = ("access-control-request-method: POST",)
    ok = _run(
        "vs-mirror-cors", "http://httpbin:8000/x", "OPTIONS", "origin: https://a.example.org", *ask
    )
    assert ok.outcome.status == 200 and ok.outcome.cluster is None
    # unmatchedPreflights: IGNORE: Envoy does not answer it, the upstream does.
    bad = _run("vs-mirror-cors", "http://httpbin:8000/x", "OPTIONS", "origin: https://evil", *ask)
    # (The case has no endpoints: the upstream request gets Envoy's 503.)
    assert bad.outcome.status == 503 and bad.outcome.cluster is not None
    assert _reasons(bad, "cors")[0].startswith("origin https://evil is not allowed")
    simple = _run("vs-mirror-cors", "http://httpbin:8000/x", "GET", "origin: https://example.com")
    assert _reasons(simple, "cors") == ["the response gets CORS headers"]


def test_faults() -> None:
    jason = _run("vs-fault", "http://ratings:9080/", "GET", "end-user: jason")
    assert _reasons(jason, "fault") == ["100 % of requests delayed 7000 ms"]
    # Delayed, then sent on (the case has no endpoints: 503 no healthy upstream).
    assert jason.outcome.status == 503 and jason.outcome.cluster is not None
    mixed = _run("vs-fault", "http://ratings:9080/mixed")
    assert _reasons(mixed, "fault") == [
        "50 % of requests delayed 500 ms",
        "0.1 % of requests aborted with 503",
    ]
    assert mixed.outcome.status == 503 and mixed.outcome.cluster is not None
    assert "some requests are aborted by fault injection (random)" in mixed.outcome.notes
    # A 100 % abort: Envoy answers itself, no cluster is reached.
    aborted = _run("vs-fault", "http://ratings:9080/x")
    assert aborted.outcome.status == 500
    assert not any(s.step == "cluster" for s in aborted.steps)
