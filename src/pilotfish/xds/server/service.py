"""The grpc.aio adapter: Aggregated Discovery Service over the sans-IO state.

Theory of operation
-------------------
Each ``StreamAggregatedResources`` call becomes a ``ProxyStream`` in the
server's stream table. The handler coroutine reads requests; the first one
names the node, which the ``ConfigGenerator`` turns into a view (or rejects
with ValueError -> INVALID_ARGUMENT). From then on, every request is fed to
the stream's ``AdsStreamState`` and the responses it plans are queued for the
stream's own writer task.

Configuration changes arrive through ``notify_change()``, which only triggers
the debouncer (an isolated change goes at once; a burst waits for a quiet
period, see ``pilotfish.xds.debounce``). When it fires, ``_push_all`` asks the
generator for the sets of every connected stream's view (memoized per view
for the duration of one push, and cached by the generator across pushes),
feeds them to each stream's state and queues whatever it planned: only
changed types, in ADS order, and nothing at all for proxies whose resources
did not change.

With ``tls=`` the server also listens on an mTLS port (see ``tls``, ``listen``): a
second grpc.aio server whose TLS (gRPC's own) requires a client certificate
issued by the mesh CA. Its ADS calls read the verified certificate from
``context.auth_context()`` (``peer_identity``); its SPIFFE identity must
match the node's NAMESPACE and SERVICE_ACCOUNT metadata, else the stream
ends with PERMISSION_DENIED. The plain-text port has no identity check: it
is meant for loopback and development use only.

Credential secrets (SDS on the ADS stream) go only to the stream whose
verified identity is in the Secret's namespace (``secret_access``): every set
the generator returns is filtered per stream before the state machine sees
it, so ``/debug/config_dump`` shows what the stream actually got. The
plain-text port gets no secret unless ``plaintext_secrets`` (development
only) is set. Requests for secrets a stream may not have are counted in
``pilotfish_xds_secret_denied_total{reason}``, logged once per stream and
name, and listed in the stream's status (names only).

``DeltaAggregatedResources`` (incremental xDS) runs through the same handler,
stream table, secret filtering, debounced pushes and write limits; only the
stream's state machine (``delta_stream.DeltaStreamState``) and encoder
(``delta_encode``) differ, and requests subscribe by difference.

Responses are pre-encoded bytes (see ``encode``); the method is registered
through a generic handler whose response serializer passes bytes through, so
no protobuf message is built per proxy. Requests go the other way through a
``request_reader.RequestReader`` per protocol: a large request many proxies
send alike (the same thousands of load assignments) is parsed and converted
once.

A client that half-closes its side (sends no more requests) still gets the
responses already planned for it before the stream ends: the handler waits
for the writer to drain them (bounded), so an answer is never cut off by a
race between reading EOF and writing. A stream is removed from the table,
and its writer task cancelled, in a ``finally`` on every exit path: normal
end, client cancel, broken connection or server shutdown (grpc.aio cancels
the handler task in the last cases).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.json_format import MessageToDict
from prometheus_client import CollectorRegistry

from pilotfish.xds.debounce import PUSH_COST_RATIO, Clock, Debouncer
from pilotfish.xds.server.connections import (
    ConnectionListener,
    notify_connected,
    notify_disconnected,
)
from pilotfish.xds.server.delta_encode import DeltaResponseEncoder
from pilotfish.xds.server.delta_stream import (
    DeltaRequest,
    DeltaStreamState,
    delta_request_from_proto,
)
from pilotfish.xds.server.encode import ResponseEncoder
from pilotfish.xds.server.listen import passthrough, serve_mtls, serve_plaintext
from pilotfish.xds.server.metrics import XdsMetrics, type_label
from pilotfish.xds.server.peer_identity import authorize_node, peer_from_auth_context
from pilotfish.xds.server.request_reader import RequestReader
from pilotfish.xds.server.secret_access import DENIAL_TEXT, SecretAccess, authorized_sets
from pilotfish.xds.server.state import (
    AdsStreamState,
    ClientRequest,
    DiffCache,
    RequestKind,
    RequestOutcome,
    StreamStateBase,
    TypeState,
)
from pilotfish.xds.server.status import ProxyStatus, type_statuses
from pilotfish.xds.server.stream import ProxyStream, WriteLimiter
from pilotfish.xds.server.tls import TlsServerConfig
from pilotfish.xds.types import ADS_PUSH_ORDER, SECRET_TYPE, ConfigGenerator, ResourceSet

__all__ = ["ADS_METHOD", "ADS_SERVICE", "XdsServer", "client_request_from_proto"]

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
ADS_METHOD = f"/{ADS_SERVICE}/StreamAggregatedResources"

_log = logging.getLogger("pilotfish.xds")

# How long a half-closed stream may take to write the answers it is still owed.
_HALF_CLOSE_DRAIN_SECONDS = 5.0
# At most this many refused secret names are remembered per stream (for status).
_MAX_DENIED_PER_STREAM = 64

# Yield to the event loop every this many streams during a push, so request
# handling and writers keep running while a large push is being planned.
_PUSH_YIELD_EVERY = 64


def client_request_from_proto(request: Any) -> ClientRequest:
    """Extract what the state machine needs from a ``DiscoveryRequest``."""
    has_error = request.HasField("error_detail")
    return ClientRequest(
        type_url=request.type_url,
        resource_names=tuple(request.resource_names),
        version_info=request.version_info,
        response_nonce=request.response_nonce,
        error_message=request.error_detail.message if has_error else None,
        error_code=request.error_detail.code if has_error else 0,
    )


class XdsServer:
    """An ADS server for Envoy: State of the World and incremental (delta).

    Knows nothing about translation: it asks ``generator`` for each
    connected proxy's ``ResourceSet`` per type and sends what changed.
    The generator is called on the event loop. Except ``notify_change``, all
    methods must be called from the event loop the server runs on.
    """

    def __init__(
        self,
        generator: ConfigGenerator,
        *,
        quiet_period: float = 0.1,
        max_delay: float = 1.0,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
        max_writes_in_flight: int = 64,
        plaintext_secrets: bool = False,
    ) -> None:
        """``plaintext_secrets`` (development only): serve credential secrets on the
        plain-text port to the namespace a node *claims*; off, that port gets none."""
        self._generator = generator
        self._plaintext_secrets = plaintext_secrets
        self._quiet_period = quiet_period
        self._max_delay = max_delay
        self._clock = clock
        self.metrics = XdsMetrics(registry if registry is not None else CollectorRegistry())
        inconsistent = getattr(generator, "inconsistent_count", None)
        if callable(inconsistent):
            self.metrics.count_inconsistent(inconsistent)
        # Per type URL: the push and resources-sent counters' children.
        self._type_counters: dict[str, tuple[Any, Any]] = {}
        self._encoder = ResponseEncoder()
        self._delta_encoder = DeltaResponseEncoder()
        # Repeated large requests (the same subscriptions) are read once.
        self._sotw_requests: RequestReader[ClientRequest] = RequestReader(
            discovery_pb2.DiscoveryRequest.FromString, client_request_from_proto
        )
        self._delta_requests: RequestReader[DeltaRequest] = RequestReader(
            discovery_pb2.DeltaDiscoveryRequest.FromString, delta_request_from_proto
        )
        self._write_limiter = WriteLimiter(max_in_flight=max_writes_in_flight)
        # The newest push's generated sets (per view) and diffs, for streams it
        # left out because their writer was behind (``_catch_up``).
        self._latest_push: tuple[dict[object, Mapping[str, ResourceSet]], DiffCache] = (
            {},
            DiffCache(),
        )
        # Subscription name sets shared by streams (see AdsStreamState); a set no
        # stream uses any more is dropped at the next push.
        self._name_sets: dict[frozenset[str], frozenset[str]] = {}
        self._streams: dict[int, ProxyStream] = {}
        # Told of every accepted stream and its end (auto-registration).
        self.connection_listener: ConnectionListener | None = None
        self._next_stream_id = 0
        self._server: Any = None
        self._secure_server: Any = None
        self._trust_domain = ""
        self.tls_port = 0  # bound mTLS port once started with ``tls=``
        self._started = False
        self._pushes_done = 0  # pushes planned to completion
        self._debouncer: Debouncer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.metrics.queued_responses.set_function(self._queued_responses)
        self.metrics.push_pending.set_function(lambda: float(self.push_pending))

    # -- lifecycle -------------------------------------------------------------------------

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int | None = 0,
        extra_hosts: Sequence[str] = (),
        *,
        tls_port: int | None = None,
        tls: TlsServerConfig | None = None,
    ) -> int:
        """Start serving; returns the bound plain-text port (useful with ``port=0``).

        ``port`` None serves no plain-text port at all (returns 0): every proxy
        must then come through the mTLS port. ``extra_hosts`` are further
        addresses served on the same port(s). With ``tls``, also serve ADS over
        mTLS with client-certificate identity checks on ``host:tls_port`` (None
        or 0: any free port); the bound mTLS port is then in ``self.tls_port``.
        """
        if self._started:
            raise RuntimeError("XdsServer already started")
        if port is None and tls is None:
            raise ValueError("an xDS server needs a plain-text port, a TLS port or both")
        self._started = True
        self._loop = asyncio.get_running_loop()
        # Leading: an isolated change is pushed at once, a burst still merged.
        self._debouncer = Debouncer(
            self._push_all,
            self._quiet_period,
            self._max_delay,
            self._clock,
            leading=True,
            cost_ratio=PUSH_COST_RATIO,
        )
        bound = 0
        if port is not None:
            bound = await self._start_plaintext(host, port, extra_hosts)
        if tls is not None:
            try:
                await self._start_tls(host, tls_port or 0, extra_hosts, tls)
            except BaseException:
                await self.close(0)
                raise
        return bound

    async def _start_plaintext(self, host: str, port: int, extra_hosts: Sequence[str]) -> int:
        self._server, bound = await serve_plaintext(
            self._rpc_handler(secure=False), host, port, extra_hosts
        )
        return bound

    async def _start_tls(
        self, host: str, port: int, extra_hosts: Sequence[str], tls: TlsServerConfig
    ) -> None:
        self._secure_server, self.tls_port = await serve_mtls(
            self._rpc_handler(secure=True), host, port, extra_hosts, tls
        )
        self._trust_domain = tls.trust_domain

    async def close(self, grace: float = 1.0) -> None:
        """Stop pushing, end every stream (after ``grace`` seconds) and free the port."""
        if self._debouncer is not None:
            await self._debouncer.close()
        secure, self._secure_server = self._secure_server, None
        if secure is not None:
            await secure.stop(grace)
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
        for stream in list(self._streams.values()):
            stream.close()
        self._streams.clear()
        self.metrics.connected_proxies.set(0)
        self._encoder.clear()
        self._delta_encoder.clear()

    # -- public API ----------------------------------------------------------------------

    def notify_change(self) -> None:
        """Configuration changed: push (debounced) to every proxy whose resources changed.

        Cheap and non-blocking. Safe to call from any thread; a no-op before
        ``start()`` (there is nobody to push to yet).
        """
        debouncer, loop = self._debouncer, self._loop
        if debouncer is None or loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            debouncer.trigger()
        else:
            loop.call_soon_threadsafe(debouncer.trigger)

    async def wait_idle(self) -> None:
        """Return once no debounced push is pending or running (queued writes may remain)."""
        if self._debouncer is not None:
            await self._debouncer.wait_idle()

    @property
    def push_pending(self) -> bool:
        """True while a debounced push waits or runs (its responses not all planned yet)."""
        d = self._debouncer
        return d is not None and (d.pending or d.running)

    @property
    def activity(self) -> int:
        """A number that changes whenever a push completes or a stream opens."""
        return self._pushes_done + self._next_stream_id

    @property
    def busy(self) -> bool:
        """A push waits or runs, or some stream still has responses to write."""
        return self.push_pending or any(s.backlog for s in self._streams.values())

    def _queued_responses(self) -> float:
        # Read by a metrics scrape; list() because a scrape may run off the loop.
        return float(sum(s.backlog for s in list(self._streams.values())))

    @property
    def stream_count(self) -> int:
        """Streams currently in the stream table."""
        return len(self._streams)

    def status(self) -> list[ProxyStatus]:
        """Per proxy id (its newest stream), what was sent, ACKed and NACKed; sorted by id."""
        return [
            ProxyStatus(
                proxy_id=s.proxy_id,
                connected_at=s.connected_at,
                view=s.view_repr,
                types=type_statuses(s.state),
                protocol=s.protocol,
                identity=s.secret_access.identity,
                secrets_denied=dict(s.secrets_denied),
                inconsistent=self._inconsistencies(s.view),
            )
            for s in sorted(self._newest_streams().values(), key=lambda s: s.proxy_id)
        ]

    def proxies_behind(self) -> list[str]:
        """Proxy ids (newest stream each, sorted) with some type sent and neither
        ACKed nor NACKed in that version yet. Reads the stream states directly:
        ``/debug/pushz`` asks this while a large mesh converges, and building
        every proxy's full status for it cost milliseconds per call."""
        return sorted(
            stream.proxy_id
            for stream in self._newest_streams().values()
            if any(_awaiting_answer(ts) for ts in stream.state.types.values())
        )

    def _inconsistencies(self, view: object) -> tuple[Mapping[str, object], ...]:
        """What the generator found missing from ``view``'s configuration (optional
        ``ConfigGenerator.consistency_report``)."""
        report = getattr(self._generator, "consistency_report", None)
        return tuple(report(view)) if callable(report) else ()

    def sent(self, proxy_id: str) -> Mapping[str, ResourceSet] | None:
        """What the proxy's newest stream was last brought in sync with, per subscribed type.

        For EDS/RDS this is the newest set whose subscribed resources the proxy
        has (changes to resources it did not subscribe to are not sent). None if
        no stream with that proxy id is connected.
        """
        stream = self._newest_streams().get(proxy_id)
        return None if stream is None else stream.state.synced_sets()

    def views(self) -> dict[str, object]:
        """The view of each connected proxy (its newest stream), by proxy id."""
        return {pid: stream.view for pid, stream in self._newest_streams().items()}

    def _newest_streams(self) -> dict[str, ProxyStream]:
        newest: dict[str, ProxyStream] = {}
        for stream in self._streams.values():  # insertion order = connection order
            newest[stream.proxy_id] = stream
        return newest

    # -- gRPC plumbing ---------------------------------------------------------------------

    def _rpc_handler(self, *, secure: bool) -> Any:
        handlers = {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                functools.partial(self._stream_aggregated_resources, secure=secure),
                request_deserializer=self._sotw_requests.parse,
                response_serializer=passthrough,
            ),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                functools.partial(self._stream_aggregated_resources, secure=secure, delta=True),
                request_deserializer=self._delta_requests.parse,
                response_serializer=passthrough,
            ),
        }
        return grpc.method_handlers_generic_handler(ADS_SERVICE, handlers)

    async def _stream_aggregated_resources(
        self, request_iterator: Any, context: Any, *, secure: bool = False, delta: bool = False
    ) -> None:
        """One ADS stream, SotW or (``delta``) incremental: the same node checks,
        secret filtering, queueing and pushes; only the state machine differs."""
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        node_id = first.node.id
        try:
            metadata = MessageToDict(first.node.metadata)
            if secure:
                peer = peer_from_auth_context(context.auth_context())
                problem = authorize_node(peer, metadata, self._trust_domain)
                if problem is not None:
                    _log.warning("refusing xDS node %r on the mTLS port: %s", node_id, problem)
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, problem)
                    return
                access = SecretAccess.verified(peer, self._trust_domain)
            else:
                access = SecretAccess.plaintext(metadata, allow=self._plaintext_secrets)
            view = self._generator.view_of(node_id, metadata)
        except ValueError as exc:
            _log.warning("rejecting xDS node %r: %s", node_id, exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return

        stream = self._open_stream(node_id, view, access, delta=delta)
        notify_connected(self.connection_listener, stream.stream_id, node_id, metadata, secure)
        handler_task = asyncio.current_task()
        writer = asyncio.get_running_loop().create_task(
            stream.write_loop(context.write, self._write_limiter)
        )

        def _on_writer_done(task: asyncio.Task[None]) -> None:
            # A failed write means the stream is unusable: end the handler too.
            if not task.cancelled() and handler_task is not None and not handler_task.done():
                exc = task.exception()
                if exc is not None:
                    _log.debug("xDS stream %s write failed: %r", stream.proxy_id, exc)
                handler_task.cancel()

        writer.add_done_callback(_on_writer_done)
        try:
            try:
                sets = self._generator.generate(view)
            except Exception:
                _log.exception("generating config for proxy %s failed", node_id)
                await context.abort(grpc.StatusCode.INTERNAL, "configuration generation failed")
                return
            self._queue_all(stream, stream.state.update(_authorized(stream, sets)))
            request = first
            while True:
                self._handle_request(stream, request)
                request = await context.read()
                if request is grpc.aio.EOF:
                    # The client half-closed: it sends no more, but it still gets the
                    # answers to what it asked before the stream ends with OK.
                    if not await stream.drain(_HALF_CLOSE_DRAIN_SECONDS):
                        _log.debug("xDS stream %s: unsent answers after half-close", node_id)
                    break
        finally:
            writer.remove_done_callback(_on_writer_done)
            writer.cancel()
            self._close_stream(stream)
            notify_disconnected(self.connection_listener, stream.stream_id)

    def _open_stream(
        self,
        proxy_id: str,
        view: object,
        access: SecretAccess | None = None,
        *,
        delta: bool = False,
    ) -> ProxyStream:
        self._next_stream_id += 1
        state: StreamStateBase
        if delta:
            state = DeltaStreamState(ADS_PUSH_ORDER, name_sets=self._name_sets)
        else:
            state = AdsStreamState(ADS_PUSH_ORDER, name_sets=self._name_sets)
        stream = ProxyStream(
            stream_id=self._next_stream_id,
            proxy_id=proxy_id,
            view=view,
            connected_at=time.time(),
            state=state,
            encoder=self._delta_encoder if delta else self._encoder,
            secret_access=access or SecretAccess(),
            on_idle=self._catch_up,
        )
        self._streams[stream.stream_id] = stream
        self.metrics.connected_proxies.set(len(self._streams))
        _log.info("xDS stream %d (%s) opened by %s", stream.stream_id, stream.protocol, proxy_id)
        return stream

    def _close_stream(self, stream: ProxyStream) -> None:
        stream.close()
        if self._streams.pop(stream.stream_id, None) is not None:
            self.metrics.connected_proxies.set(len(self._streams))
            _log.info("xDS stream %d of %s closed", stream.stream_id, stream.proxy_id)

    def _handle_request(self, stream: ProxyStream, request: Any) -> None:
        if request.response_nonce:
            stream.replied(request.response_nonce)
        state = stream.state
        if isinstance(state, DeltaStreamState):
            if request.type_url == SECRET_TYPE:
                self._check_secret_request(stream, request.resource_names_subscribe)
            outcome = state.receive(self._delta_requests.record(request), now=time.time())
        else:
            assert isinstance(state, AdsStreamState)
            if request.type_url == SECRET_TYPE:
                self._check_secret_request(stream, request.resource_names)
            outcome = state.receive(self._sotw_requests.record(request), now=time.time())
        self._observe(stream, outcome)
        self._queue_all(stream, outcome.responses)

    def _check_secret_request(self, stream: ProxyStream, names: Sequence[str]) -> None:
        """Count and log (once per stream and name) secrets the stream may not have."""
        denied = stream.secrets_denied
        for name, reason in stream.secret_access.denied(names).items():
            if name in denied:
                continue
            self.metrics.secret_denied.labels(reason=reason.value).inc()
            if len(denied) < _MAX_DENIED_PER_STREAM:
                denied[name] = reason.value
            _log.warning(
                "not sending secret %r to proxy %s: %s",
                name[:200],
                stream.proxy_id,
                DENIAL_TEXT[reason.value].format(identity=stream.secret_access.identity),
            )

    def _observe(self, stream: ProxyStream, outcome: RequestOutcome) -> None:
        kind = outcome.kind
        if kind is RequestKind.NACK and outcome.nack is not None:
            self.metrics.nacks.labels(type=type_label(outcome.type_url)).inc()
            _log.warning(
                "proxy %s rejected %s version %s: %s",
                stream.proxy_id,
                type_label(outcome.type_url),
                outcome.nack.version,
                outcome.nack.message,
            )
        elif kind is RequestKind.UNKNOWN_TYPE:
            self.metrics.unknown_type_requests.inc()
            if outcome.first_unknown:
                _log.warning(
                    "proxy %s requested unsupported type %r; not answering",
                    stream.proxy_id,
                    outcome.type_url[:200],
                )
        elif kind is RequestKind.STALE:
            _log.debug("proxy %s: stale request for %s", stream.proxy_id, outcome.type_url)

    def _queue_all(self, stream: ProxyStream, responses: Any) -> None:
        counters = self._type_counters
        for response in responses:
            stream.enqueue(response)
            found = counters.get(response.type_url)
            if found is None:
                # ``labels()`` takes a lock and builds a key: once per type, not per
                # response (a push to a thousand streams queues a thousand).
                label = type_label(response.type_url)
                found = counters[response.type_url] = (
                    self.metrics.pushes.labels(type=label),
                    self.metrics.resources_sent.labels(type=label),
                )
            found[0].inc()
            found[1].inc(response.resource_count)

    # -- pushes ------------------------------------------------------------------------------

    async def _push_all(self) -> None:
        started = time.perf_counter()
        self._prune_name_sets()
        memo: dict[object, Mapping[str, ResourceSet]] = {}
        diffs = DiffCache()
        # Streams left out because their writer is behind catch up with these.
        self._latest_push = (memo, diffs)
        for index, stream in enumerate(list(self._streams.values())):
            if index and index % _PUSH_YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if stream.closed or stream.catch_up_when_idle():
                continue
            try:
                sets = self._sets_for(stream.view, memo)
            except Exception:
                _log.exception("generating config for proxy %s failed", stream.proxy_id)
                continue
            self._queue_all(stream, stream.state.update(_authorized(stream, sets), diffs))
        self._pushes_done += 1
        elapsed = time.perf_counter() - started
        self.metrics.push_seconds.observe(elapsed)
        _log.debug("push planned for %d streams in %.3fs", len(self._streams), elapsed)

    def _catch_up(self, stream: ProxyStream) -> None:
        """Plan a stream a push left out, now that its queue is empty."""
        if stream.closed:
            return
        memo, diffs = self._latest_push
        try:
            sets = self._sets_for(stream.view, memo)
        except Exception:
            _log.exception("generating config for proxy %s failed", stream.proxy_id)
            return
        self._queue_all(stream, stream.state.update(_authorized(stream, sets), diffs))

    def _prune_name_sets(self) -> None:
        """Keep only the shared subscription sets some stream still uses."""
        live = {
            ts.names: ts.names
            for stream in self._streams.values()
            for ts in stream.state.types.values()
            if ts.names
        }
        self._name_sets.clear()
        self._name_sets.update(live)

    def _sets_for(
        self, view: object, memo: dict[object, Mapping[str, ResourceSet]]
    ) -> Mapping[str, ResourceSet]:
        try:
            cached = memo.get(view)
        except TypeError:  # an unhashable view: no memo, ask the generator each time
            return self._generator.generate(view)
        if cached is None:
            cached = memo[view] = self._generator.generate(view)
        return cached


def _awaiting_answer(ts: TypeState) -> bool:
    sent = ts.sent_version
    if not sent or sent == ts.acked_version:
        return False
    return ts.nack is None or sent != ts.nack.version


def _authorized(stream: ProxyStream, sets: Mapping[str, ResourceSet]) -> Mapping[str, ResourceSet]:
    """``sets`` with the credential secrets restricted to what ``stream`` may receive."""
    return authorized_sets(stream.secret_access, sets)
