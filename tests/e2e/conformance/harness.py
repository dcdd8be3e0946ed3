"""How one ported conformance case runs against a live mesh.

Theory of operation: upstream's suite applies a test's manifests, waits
until the Gateway and the test's routes are Accepted, then sends each
``ExpectedResponse``'s request to the Gateway's address until the answer
matches, and requires it to keep matching (``MakeRequestAndExpectEventually
ConsistentResponse``: the configuration converges, then must stay put). This
module does the same: ``check_expect`` sends one request with ``http.client``
(redirects are not followed; Host and method as the case says), compares the
answer with ``compare`` (status, the echo backend's JSON: pod prefix,
namespace, path, host, headers seen, absent headers; a redirect's Location),
and passes once ``CONSISTENT`` answers in a row match. Statuses come from the
control plane's config API (the same objects ``pilotfish get`` shows).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cases import Expect, ListenerWant

GROUP = "apis/gateway.networking.k8s.io/v1"
#: In an expectation's path: a new random id for every request sent.
UUID_MARK = "{uuid}"
CONSISTENT = 3
REQUEST_TIMEOUT = 3.0


@dataclass
class Api:
    """The control plane's config API, with its token."""

    base: str
    token_file: Path

    def get(self, path: str) -> dict[str, Any] | None:
        req = urllib.request.Request(
            f"{self.base}/{path}",
            headers={"Authorization": f"Bearer {self.token_file.read_text().strip()}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def status(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self.get(f"{GROUP}/namespaces/{namespace}/{plural}/{name}") or {}
        return dict(obj.get("status") or {})


def gateway_address(api: Api, namespace: str, name: str) -> str | None:
    """The first IP address in the Gateway's ``status.addresses``, if any yet."""
    for address in api.status("gateways", namespace, name).get("addresses") or []:
        if address.get("type", "IPAddress") == "IPAddress" and address.get("value"):
            return str(address["value"])
    return None


def route_condition(
    api: Api, namespace: str, name: str, kind: str, plural: str = "httproutes"
) -> list[tuple[str, str]]:
    """(status, reason) of condition ``kind`` in each of the route's parents."""
    out = []
    for parent in api.status(plural, namespace, name).get("parents") or []:
        for cond in parent.get("conditions") or []:
            if cond.get("type") == kind:
                out.append((str(cond.get("status")), str(cond.get("reason"))))
    return out


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


Sender = Callable[[Expect], Answer]


@dataclass(frozen=True)
class ServerCert:
    """The certificate upstream's suite makes for HTTPS listeners
    (``tls-validity-checks-certificate``): trusted as the only CA, and what the
    Gateway must present."""

    pem_file: Path
    der: bytes


def gateway_sender(address: str, port: int, tls: ServerCert | None = None) -> Sender:
    """Requests to a Gateway's address, sent from the host (HTTPS ones to 443)."""

    def sender(expect: Expect) -> Answer:
        from harness_h2 import send_h2_tls, send_h2c  # it builds on this module

        if expect.https:
            assert tls is not None, "an HTTPS request needs the suite's certificate"
            if expect.protocol == "h2":
                return send_h2_tls(address, expect.port or expect.tls_port, expect, tls)
            return send_tls(address, expect.port or expect.tls_port, expect, tls)
        if expect.protocol == "h2c":
            return send_h2c(address, expect.port or port, expect)
        return send(address, expect.port or port, expect)

    return sender


#: Sends many GETs from inside a pod's namespace in one process (a curl per
#: request costs a process start each): argv host port path count concurrency
#: timeout; prints [[status, pod], ...]. Each request is its own connection, as
#: with curl, so the sidecar balances every one.
_BATCH_SCRIPT = """
import http.client, json, sys
from concurrent.futures import ThreadPoolExecutor
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
count, concurrency, timeout = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
def one(_):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        body = resp.read()
        pod = json.loads(body).get("pod", "") if resp.status == 200 else ""
        return [resp.status, pod]
    except (OSError, ValueError) as exc:
        return [0, repr(exc)]
    finally:
        conn.close()
with ThreadPoolExecutor(concurrency) as pool:
    print(json.dumps(list(pool.map(one, range(count)))))
"""


class PodSender:
    """Requests sent from inside a pod's network namespace (so its sidecar carries
    them), to ``http://<host>`` where host is the expectation's (else
    ``default_host``), port 80 unless it names one: one curl per request, or
    ``pods_of`` for a batch."""

    def __init__(self, netns: str, default_host: str) -> None:
        self.netns = netns
        self.default_host = default_host

    def __call__(self, expect: Expect) -> Answer:
        host = expect.host or self.default_host
        authority = host if ":" in host.rpartition("]")[2] else f"{host}:80"
        # A Host header of the case's own names another host than the one dialled
        # (upstream's Request.Headers["Host"], MeshFrontendHostname).
        headers = expect.request_headers()
        host_header = next((v for k, v in headers if k.lower() == "host"), host)
        argv = ["ip", "netns", "exec", self.netns, "curl", "-s", "-i"]
        argv += ["--max-time", str(REQUEST_TIMEOUT), "-X", expect.method]
        argv += ["-H", f"Host: {host_header}"]
        for name, value in headers:
            if name.lower() != "host":
                argv += ["-H", f"{name}: {value}"]
        argv.append(f"http://{authority}{expect.path}")
        proc = subprocess.run(argv, capture_output=True, timeout=REQUEST_TIMEOUT + 5)
        if proc.returncode != 0:
            raise OSError(f"curl exit {proc.returncode}: {proc.stderr.decode()[:200]}")
        return parse_raw_response(proc.stdout)

    def pods_of(self, path: str, count: int, concurrency: int) -> list[tuple[int, str]]:
        """(status, answering pod) of ``count`` GETs of ``path`` to the default host."""
        argv = ["ip", "netns", "exec", self.netns, sys.executable, "-c", _BATCH_SCRIPT]
        argv += [self.default_host, "80", path, str(count), str(concurrency)]
        argv.append(str(REQUEST_TIMEOUT))
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise OSError(f"batch sender exit {proc.returncode}: {proc.stderr[-300:]}")
        return [(int(status), str(pod)) for status, pod in json.loads(proc.stdout)]


def pod_sender(netns: str, default_host: str) -> PodSender:
    return PodSender(netns, default_host)


def parse_raw_response(raw: bytes) -> Answer:
    """An HTTP/1.1 response as curl -i prints it."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        low, value = key.strip().lower(), value.strip()
        headers[low] = f"{headers[low]},{value}" if low in headers else value
    return Answer(status, headers, body)


def send(address: str, port: int, expect: Expect) -> Answer:
    return _exchange(http.client.HTTPConnection(address, port, timeout=REQUEST_TIMEOUT), expect)


def send_tls(address: str, port: int, expect: Expect, cert: ServerCert) -> Answer:
    """``expect`` over TLS with SNI ``expect.host``, as upstream's
    MakeTLSRequestAndExpectEventuallyConsistentResponse sends it.

    The chain is verified against the suite's certificate alone, and the
    presented certificate must be that one. Hostname checking is left to that
    identity check: the certificate's names are upstream's (``*``, ``*.org``),
    which Go's verifier matches and OpenSSL's refuses as too wide.
    """
    ctx = ssl.create_default_context(cafile=str(cert.pem_file))
    ctx.check_hostname = False
    if expect.client_cert is not None:
        _load_client_cert(ctx, *expect.client_cert)
    raw = socket.create_connection((address, port), timeout=REQUEST_TIMEOUT)
    try:
        sock = ctx.wrap_socket(raw, server_hostname=expect.host or None)
    except BaseException:
        raw.close()
        raise
    if sock.getpeercert(binary_form=True) != cert.der:
        sock.close()
        raise OSError("the gateway presented another certificate than the suite's")
    conn = http.client.HTTPConnection(address, port, timeout=REQUEST_TIMEOUT)
    conn.sock = sock
    return _exchange(conn, expect)


def _load_client_cert(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """The client certificate to present (ssl loads them from files only)."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "c.pem").write_bytes(cert_pem)
        (Path(tmp) / "k.pem").write_bytes(key_pem)
        ctx.load_cert_chain(str(Path(tmp) / "c.pem"), str(Path(tmp) / "k.pem"))


def _exchange(conn: http.client.HTTPConnection, expect: Expect) -> Answer:
    try:
        conn.putrequest(expect.method, expect.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", expect.host or "example.com")
        for name, value in expect.request_headers():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        headers: dict[str, str] = {}
        for key, value in resp.getheaders():
            low = key.lower()
            headers[low] = f"{headers[low]},{value}" if low in headers else value
        return Answer(resp.status, headers, body)
    finally:
        conn.close()


def route_has_latest_conditions(api: Api, namespace: str, name: str) -> int:
    """The route's generation once every condition of every parent observed it
    (upstream's HTTPRouteMustHaveLatestConditions); 0 until then."""
    obj = api.get(f"{GROUP}/namespaces/{namespace}/httproutes/{name}") or {}
    generation = int((obj.get("metadata") or {}).get("generation") or 1)
    parents = (obj.get("status") or {}).get("parents") or []
    seen = [c.get("observedGeneration") for p in parents for c in p.get("conditions") or []]
    return generation if parents and all(g == generation for g in seen) else 0


def listeners_mismatch(api: Api, namespace: str, wants: list[ListenerWant]) -> str | None:
    """Why the Gateway's listeners are not as ``wants`` (all of one Gateway) say, or None.

    As upstream's GatewayStatusMustHaveListeners: the Gateway's conditions
    observed its generation, it lists exactly the wanted listeners, each with
    the wanted attachedRoutes, condition statuses and (at least) kinds.
    """
    gateway = wants[0].gateway
    obj = api.get(f"{GROUP}/namespaces/{namespace}/gateways/{gateway}") or {}
    generation = int((obj.get("metadata") or {}).get("generation") or 1)
    status = obj.get("status") or {}
    if any(c.get("observedGeneration") != generation for c in status.get("conditions") or []):
        return f"Gateway {gateway}: conditions do not observe generation {generation}"
    actual = {str(ls.get("name")): ls for ls in status.get("listeners") or []}
    if sorted(actual) != sorted(w.listener for w in wants):
        return f"Gateway {gateway}: listeners {sorted(actual)}"
    for want in wants:
        ls = actual[want.listener]
        where = f"Gateway {gateway} listener {want.listener}"
        kinds = {k.get("kind") for k in ls.get("supportedKinds") or []}
        if not set(want.kinds) <= kinds:
            return f"{where}: supportedKinds {sorted(kinds)}"
        if ls.get("attachedRoutes") != want.attached:
            return f"{where}: attachedRoutes {ls.get('attachedRoutes')}, want {want.attached}"
        got = {c.get("type"): c.get("status") for c in ls.get("conditions") or []}
        for kind, value in want.conditions:
            if got.get(kind) != value:
                return f"{where}: {kind}={got.get(kind)}, want {value}"
    return None


def _seen_headers(body: dict[str, Any]) -> dict[str, str]:
    """The backend's header map, lower-cased names, values joined with ',' as upstream does."""
    raw = body.get("headers") or {}
    return {str(k).lower(): ",".join(v) for k, v in raw.items()}


def compare(expect: Expect, answer: Answer) -> str | None:
    """Why ``answer`` does not meet ``expect``; None when it does."""
    if expect.failure:
        failed = answer.status not in (200, 408, 504)
        return None if failed else f"status {answer.status}, want a failure (not 200/408/504)"
    wanted = expect.statuses or (expect.status,)
    if answer.status not in wanted:
        return f"status {answer.status}, want {' or '.join(map(str, wanted))}"
    if expect.location is not None:
        return _compare_location(expect, answer.headers.get("location", ""))
    why = _compare_response_headers(expect, answer.headers)
    if why is None and expect.not_from_backend:
        why = _not_from_backend(answer.body)
    if why is not None or not expect.backend:
        return why
    try:
        body = json.loads(answer.body)
    except ValueError:
        return f"not the echo backend's JSON: {answer.body[:120]!r}"
    return _compare_seen(expect, body)


def _not_from_backend(body: bytes) -> str | None:
    try:
        seen = json.loads(body)
    except ValueError:
        return None
    if isinstance(seen, dict) and seen.get("namespace"):
        return f"answered by the backend {seen.get('namespace')}/{seen.get('pod')}"
    return None


def _compare_response_headers(expect: Expect, headers: dict[str, str]) -> str | None:
    """Upstream's Response.Headers (values joined with ','), ValidHeaderValues,
    AbsentHeaders and IgnoreWhitespace."""

    def norm(value: str) -> str:
        return value.replace(" ", "") if expect.ignore_whitespace else value

    for name, value in expect.response_headers:
        got = headers.get(name.lower())
        if got is None or norm(got) != norm(value):
            return f"response {name}: {got!r}, want {value!r}"
    for name, values in expect.valid_response_headers:
        got = headers.get(name.lower())
        if got is None or norm(got) not in {norm(v) for v in values}:
            return f"response {name}: {got!r}, want one of {list(values)!r}"
    for name in expect.absent_response_headers:
        if name.lower() in headers:
            return f"response {name}: {headers[name.lower()]!r}, want it absent"
    return None


def _compare_seen(expect: Expect, body: dict[str, Any]) -> str | None:
    pod, namespace = str(body.get("pod", "")), str(body.get("namespace", ""))
    wrong_namespace = bool(expect.namespace) and namespace != expect.namespace
    if not pod.startswith(expect.backend + "-") or wrong_namespace:
        return f"answered by {namespace}/{pod}, want {expect.namespace}/{expect.backend}-*"
    want_path = expect.seen_path if expect.seen_path is not None else expect.path
    if body.get("path") != want_path:
        return f"backend saw path {body.get('path')!r}, want {want_path!r}"
    if body.get("method") != expect.method:
        return f"backend saw method {body.get('method')!r}, want {expect.method!r}"
    want_host = expect.seen_host if expect.seen_host is not None else expect.host
    if want_host and body.get("host") != want_host:
        return f"backend saw host {body.get('host')!r}, want {want_host!r}"
    if expect.seen_sni:
        sni = (body.get("tls") or {}).get("serverName")
        if sni != expect.seen_sni:
            return f"backend saw TLS server name {sni!r}, want {expect.seen_sni!r}"
    if expect.seen_client_cert:
        peers = (body.get("tls") or {}).get("peerCertificates") or []
        if not peers or _der(peers[0].encode()) != _der(expect.seen_client_cert):
            return "backend did not see the expected client certificate"
    seen = _seen_headers(body)
    wanted = expect.headers if expect.seen_headers is None else expect.seen_headers
    for name, value in wanted:
        if seen.get(name.lower()) != value:
            return f"backend saw {name}: {seen.get(name.lower())!r}, want {value!r}"
    for name in expect.absent_headers:
        if name.lower() in seen:
            return f"backend saw {name}: {seen[name.lower()]!r}, want it absent"
    return None


def _der(pem: bytes) -> bytes:
    """The DER of a PEM certificate (PEM line breaks differ between writers)."""
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def _compare_location(expect: Expect, location: str) -> str | None:
    """Upstream's redirect check (``CompareRoundTrip``): the Location's host, scheme
    and path must be the expected ones, where an unset expectation means the
    request's own scheme and path (any host); an unset port must be the
    scheme's default or absent."""
    assert expect.location is not None
    if not location:
        return "no Location header"
    parts = urllib.parse.urlsplit(location)
    scheme, host, port, path = expect.location
    scheme = scheme or ("https" if expect.https else "http")
    path = path or urllib.parse.urlsplit(expect.path).path
    got_port = str(parts.port or "")
    checks = [
        ("host", parts.hostname or "", host or parts.hostname or ""),
        ("scheme", parts.scheme, scheme),
        ("path", parts.path, path),
    ]
    if port:
        checks.append(("port", got_port, port))
    elif got_port not in ("", {"http": "80", "https": "443"}.get(parts.scheme.lower(), got_port)):
        checks.append(("port", got_port, f"{scheme}'s default or none"))
    for what, actual, wanted in checks:
        if actual != wanted:
            return f"Location {location!r}: {what} {actual!r}, want {wanted!r}"
    return None


def check_expect(
    sender: Sender,
    expect: Expect,
    deadline: float,
    now: Callable[[], float] = time.monotonic,
    streak_needed: int = CONSISTENT,
) -> str | None:
    """Send until ``streak_needed`` answers in a row match (None) or ``deadline``
    passes (the last mismatch)."""
    streak, last = 0, "no answer"
    while True:
        one = expect
        if UUID_MARK in expect.path:  # each request its own id (upstream's retry tests)
            one = replace(expect, path=expect.path.replace(UUID_MARK, uuid.uuid4().hex))
        try:
            answer = sender(one)
        except OSError as exc:
            why = None if expect.refused else f"request failed: {exc}"
        else:
            why = f"answered {answer.status}, want a refusal" if expect.refused else None
            why = why or compare(one, answer)
        if why is None:
            streak += 1
            if streak >= streak_needed:
                return None
            continue
        streak, last = 0, why
        if now() >= deadline:
            return last
        time.sleep(0.2)  # a retry pace, not a wait for something: the deadline bounds it


#: Upstream's weight measurement (``weight.TestWeightedDistribution``): 500
#: requests, 10 at a time, each share within 0.05 of its weight; a measurement
#: off by more is taken again, up to 10 times (``MaxTestRetries``), since with
#: 0.05 a correct split misses now and then (0.7 of 500 has a 2-sigma of 0.041).
#: Only that statistical miss is measured again: an error, a refused request,
#: an unexpected pod, or traffic to a weight-0 backend fails at once.
WEIGHT_REQUESTS = 500
WEIGHT_CONCURRENCY = 10
WEIGHT_TOLERANCE = 0.05
WEIGHT_MEASUREMENTS = 10


class _WrongAnswer(Exception):
    pass


def _backend_of(sender: Sender, probe: Expect, weights: tuple[tuple[str, float], ...]) -> str:
    answer = sender(probe)
    pod = str(json.loads(answer.body).get("pod", "")) if answer.status == 200 else ""
    return _backend_named(answer.status, pod, weights)


def _backend_named(status: int, pod: str, weights: tuple[tuple[str, float], ...]) -> str:
    if status != 200:
        raise _WrongAnswer(f"status {status} while measuring weights ({pod})")
    backend = next((b for b, _ in weights if pod.startswith(b + "-")), "")
    if not backend:
        raise _WrongAnswer(f"answered by unexpected pod {pod!r}")
    return backend


def _measure(
    sender: Sender, probe: Expect, weights: tuple[tuple[str, float], ...]
) -> dict[str, int]:
    if isinstance(sender, PodSender):
        answers = sender.pods_of(probe.path, WEIGHT_REQUESTS, WEIGHT_CONCURRENCY)
        backends = [_backend_named(status, pod, weights) for status, pod in answers]
    else:
        with ThreadPoolExecutor(WEIGHT_CONCURRENCY) as pool:
            backends = list(
                pool.map(lambda _: _backend_of(sender, probe, weights), range(WEIGHT_REQUESTS))
            )
    counts: dict[str, int] = {}
    for backend in backends:
        counts[backend] = counts.get(backend, 0) + 1
    return counts


#: How long every backend with a share may take to answer once before the
#: measurement: their pods and endpoints come up independently of the first one's.
WEIGHT_READY_DEADLINE = 30.0


def _every_backend_answers(
    sender: Sender, probe: Expect, weights: tuple[tuple[str, float], ...]
) -> str | None:
    """Wait (bounded) until each backend with a share has answered once, as the
    upstream suite's eventually-consistent request precedes its measurement."""
    wanted = {b for b, share in weights if share > 0.0}
    seen: set[str] = set()
    last = ""
    deadline = time.monotonic() + WEIGHT_READY_DEADLINE
    while not wanted <= seen:
        try:
            seen.add(_backend_of(sender, probe, weights))
        except (_WrongAnswer, OSError) as exc:
            last = str(exc)
            time.sleep(0.2)  # a retry pace; the deadline bounds the wait
        if time.monotonic() >= deadline:
            return f"backends {sorted(wanted - seen)} never answered ({last or 'no error'})"
    return None


def check_weights(sender: Sender, path: str, weights: tuple[tuple[str, float], ...]) -> str | None:
    """Whether the backends' shares of ``WEIGHT_REQUESTS`` requests match ``weights``."""
    probe = Expect(path)
    not_ready = _every_backend_answers(sender, probe, weights)
    if not_ready is not None:
        return not_ready
    miss = ""
    for attempt in range(1, WEIGHT_MEASUREMENTS + 1):
        try:
            counts = _measure(sender, probe, weights)
        except (_WrongAnswer, OSError) as exc:
            return str(exc)
        failed, miss = judge_weights(counts, weights, attempt)
        if failed or not miss:
            return miss or None
    return miss


def judge_weights(
    counts: dict[str, int], weights: tuple[tuple[str, float], ...], attempt: int
) -> tuple[bool, str]:
    """One measurement of ``WEIGHT_REQUESTS`` against ``weights``: (failed for good,
    what is off). Traffic to a weight-0 backend fails at once; shares outside
    ``WEIGHT_TOLERANCE`` are worth measuring again; (False, "") when all match."""
    idle = [b for b, share in weights if share == 0.0 and counts.get(b)]
    if idle:
        return True, f"weight-0 backends got traffic: {idle} ({counts})"
    off = [
        f"{b} got {counts.get(b, 0) / WEIGHT_REQUESTS:.3f}, want {share} +/- {WEIGHT_TOLERANCE}"
        for b, share in weights
        if abs(counts.get(b, 0) / WEIGHT_REQUESTS - share) > WEIGHT_TOLERANCE
    ]
    if not off:
        return False, ""
    return False, f"{'; '.join(off)} (measurement {attempt} of {WEIGHT_MEASUREMENTS})"
