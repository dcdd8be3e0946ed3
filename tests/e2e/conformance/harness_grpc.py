"""How one ported GATEWAY-GRPC case is checked against a live Gateway.

Theory of operation: upstream's ``grpc.MakeRequestAndExpectEventuallyConsistent
Response`` sends the expected RPC with a real gRPC client (plaintext HTTP/2 to
the Gateway's address, ``:authority`` overridden when the case gives one)
until ``compareResponse`` holds, then requires it to keep holding. Here
``check_grpc_expect`` sends with ``pilotfish.samples.conformance_grpc_echo.call``
(grpcio) and passes after ``CONSISTENT`` matching answers in a row.
``compare_grpc`` is upstream's comparison: the status code, then for OK the
echo's fully qualified method, namespace and pod name prefix; and the
headers the echo saw where a case names them (``cases_grpc``). A route that
matches nothing is a 404 from Envoy, which gRPC reads as ``UNIMPLEMENTED``,
the code upstream expects. ``check_grpc_weights`` is upstream's weighted
distribution test over ``Echo`` calls, each on its own channel as upstream's
sampler dials a fresh client per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from cases_grpc import GrpcExpect
from harness import (
    CONSISTENT,
    REQUEST_TIMEOUT,
    WEIGHT_CONCURRENCY,
    WEIGHT_MEASUREMENTS,
    WEIGHT_READY_DEADLINE,
    WEIGHT_REQUESTS,
    judge_weights,
)

from pilotfish.samples.conformance_grpc_echo import Answer, call, full_method

GrpcSender = Callable[[GrpcExpect], Answer]


def gateway_grpc_sender(address: str, port: int) -> GrpcSender:
    """RPCs to a Gateway's address, one channel (connection) per RPC."""
    target = f"{address}:{port}"

    def sender(expect: GrpcExpect) -> Answer:
        return call(
            target,
            expect.method,
            metadata=expect.metadata,
            authority=expect.authority,
            timeout=REQUEST_TIMEOUT,
        )

    return sender


def compare_grpc(expect: GrpcExpect, answer: Answer) -> str | None:
    """Why ``answer`` does not meet ``expect`` (upstream's compareResponse); None when it does."""
    if expect.failure:
        return None if answer.code.name != "OK" else "code OK, want a failure"
    if answer.code.name != expect.code:
        extra = f" ({answer.details})" if answer.details else ""
        return f"code {answer.code.name}{extra}, want {expect.code}"
    if answer.code.name != "OK":
        return None
    if answer.method != full_method(expect.method):
        return f"echo saw method {answer.method!r}, want {full_method(expect.method)!r}"
    if expect.namespace and answer.namespace != expect.namespace:
        return f"answered in namespace {answer.namespace!r}, want {expect.namespace!r}"
    if not answer.pod.startswith(expect.backend):
        return f"answered by pod {answer.pod!r}, want {expect.backend}*"
    return _compare_seen(expect, answer)


def _compare_seen(expect: GrpcExpect, answer: Answer) -> str | None:
    """The headers the echo reported against the case's ``seen`` and ``unseen``."""
    seen: dict[str, str] = {}
    for key, value in answer.headers:
        seen[key] = f"{seen[key]},{value}" if key in seen else value
    for name, value in expect.seen:
        if seen.get(name) != value:
            return f"backend saw {name}: {seen.get(name)!r}, want {value!r}"
    for name in expect.unseen:
        if name in seen:
            return f"backend saw {name}: {seen[name]!r}, want it absent"
    return None


def check_grpc_expect(
    sender: GrpcSender,
    expect: GrpcExpect,
    deadline: float,
    now: Callable[[], float] = time.monotonic,
) -> str | None:
    """Send until ``CONSISTENT`` answers in a row match (None) or ``deadline`` passes
    (the last mismatch)."""
    streak, last = 0, "no answer"
    while True:
        why = compare_grpc(expect, sender(expect))
        if why is None:
            streak += 1
            if streak >= CONSISTENT:
                return None
            continue
        streak, last = 0, why
        if now() >= deadline:
            return last
        time.sleep(0.2)  # a retry pace, not a wait for something: the deadline bounds it


class _WrongAnswer(Exception):
    pass


def _backend_of(sender: GrpcSender, weights: tuple[tuple[str, float], ...]) -> str:
    answer = sender(GrpcExpect("Echo"))
    if answer.code.name != "OK":
        raise _WrongAnswer(f"code {answer.code.name} while measuring weights ({answer.details})")
    backend = next((b for b, _ in weights if answer.pod.startswith(b + "-")), "")
    if not backend:
        raise _WrongAnswer(f"answered by unexpected pod {answer.pod!r}")
    return backend


def _every_backend_answers(
    sender: GrpcSender, weights: tuple[tuple[str, float], ...]
) -> str | None:
    """Wait (bounded) until each backend with a share has answered once."""
    wanted = {b for b, share in weights if share > 0.0}
    seen: set[str] = set()
    last = ""
    deadline = time.monotonic() + WEIGHT_READY_DEADLINE
    while not wanted <= seen:
        try:
            seen.add(_backend_of(sender, weights))
        except _WrongAnswer as exc:
            last = str(exc)
            time.sleep(0.2)  # a retry pace; the deadline bounds the wait
        if time.monotonic() >= deadline:
            return f"backends {sorted(wanted - seen)} never answered ({last or 'no error'})"
    return None


def check_grpc_weights(sender: GrpcSender, weights: tuple[tuple[str, float], ...]) -> str | None:
    """Whether the backends' shares of ``WEIGHT_REQUESTS`` Echo calls match ``weights``.

    As upstream (and ``harness.check_weights``): only a statistical miss is
    measured again, up to ``WEIGHT_MEASUREMENTS`` times; an error or traffic
    to a weight-0 backend fails at once.
    """
    not_ready = _every_backend_answers(sender, weights)
    if not_ready is not None:
        return not_ready
    miss = ""
    for attempt in range(1, WEIGHT_MEASUREMENTS + 1):
        try:
            with ThreadPoolExecutor(WEIGHT_CONCURRENCY) as pool:
                backends = list(
                    pool.map(lambda _: _backend_of(sender, weights), range(WEIGHT_REQUESTS))
                )
        except _WrongAnswer as exc:
            return str(exc)
        counts: dict[str, int] = {}
        for backend in backends:
            counts[backend] = counts.get(backend, 0) + 1
        failed, miss = judge_weights(counts, weights, attempt)
        if failed or not miss:
            return miss or None
    return miss
