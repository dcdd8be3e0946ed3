"""Sans-IO bookkeeping for one State-of-the-World ADS stream.

Theory of operation
-------------------
An ADS stream multiplexes one logical xDS conversation per type URL. For each
type this module remembers what the client asked for (subscribed names, or
wildcard), what was last sent (version, nonce, and exactly which resource
bytes), what the client last ACKed, and its last NACK. It performs no I/O and
reads no clock: the adapter feeds it two kinds of input and acts on the
``Response`` plans it returns.

``receive(request, now)`` classifies one DiscoveryRequest:

* unknown type URL -> ``UNKNOWN_TYPE``; nothing is answered, nothing crashes.
* the first request for a type on this stream -> ``SUBSCRIBE``; the current
  resources are planned for sending, whatever nonce the client carried over
  from an earlier stream.
* ``response_nonce`` not equal to the latest nonce sent for that type ->
  ``STALE``; ignored entirely. The xDS protocol says a server must not answer
  a request with a stale nonce: a newer response is already on its way and
  the client will send a fresh request (with its current subscription) when it
  processes it. Garbage nonces fall in the same bucket.
* latest nonce with ``error_detail`` -> ``NACK``; recorded with Envoy's
  message. The rejected version is *not* re-sent: a new response only follows
  a real change (or a newly subscribed name), so a bad config cannot loop.
* latest nonce without error -> ``ACK``.

A request carrying the latest nonce may also change the subscription (Envoy
puts its full current name list in every request, ACKs included); newly
subscribed names are then sent even if unchanged, as the protocol requires.

``update(sets)`` stores the newest ``ResourceSet`` per type and plans a
response for each subscribed type whose resources (as this client sees them)
changed, in ``ADS_ORDER``.

A cluster that is *modified* (same name, different bytes) is re-created by
Envoy and stays warming until an EDS response for it arrives, even when its
ClusterLoadAssignment did not change; the proxy would keep using the old
cluster forever (``initial_fetch_timeout`` is 0). So when a CDS response
modifies clusters, the same ``update`` also re-sends the subscribed load
assignments of those clusters (EDS resource names are cluster names), after
the CDS response, as Istio does.

What a response holds depends on the type. Listener and Cluster are
"state of the world": every response carries the complete set the client
subscribed to, and an omitted resource means "deleted". For every other type,
SotW responses are grouped like incremental ones: a response may carry only
the resources that changed, and a client must not delete resources left out
(Envoy xDS protocol, "Grouping Resources into Responses" and "Deleting
Resources", envoy/api/xds_protocol.rst,
https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#grouping-resources-into-responses).
So EDS, RDS and SDS responses carry only subscribed resources whose bytes
differ from what this stream last delivered (a rotated certificate is one
Secret, nothing else).

For those types the client's knowledge is kept implicitly: after every plan
it holds exactly ``synced`` restricted to its subscribed names. What changed
is then ``diff(synced, current)`` intersected with the names, plus newly
subscribed names. Streams with the same view share both sets, so a push
computes each set-to-set diff once (``DiffCache``) instead of comparing
thousands of resources per stream.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from pilotfish.xds.types import ADS_ORDER, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ResourceSet

__all__ = [
    "WILDCARD",
    "AdsStreamState",
    "ClientRequest",
    "DiffCache",
    "NackRecord",
    "RequestKind",
    "RequestOutcome",
    "Response",
    "StreamStateBase",
    "TypeState",
    "gone",
]

# Explicit wildcard name (xDS allows "*" as well as an empty first request).
WILDCARD = "*"

_T = TypeVar("_T")

# Types whose every response must be the complete state of the world.
_FULL_STATE_TYPES = frozenset({CLUSTER_TYPE, LISTENER_TYPE})

# A hostile client could send endless distinct type URLs; remember a bounded
# number of them for "log once" purposes.
_MAX_REMEMBERED_UNKNOWN = 32


class RequestKind(enum.Enum):
    """How a request was classified."""

    SUBSCRIBE = "subscribe"
    ACK = "ack"
    NACK = "nack"
    STALE = "stale"
    UNKNOWN_TYPE = "unknown_type"


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """The fields of a DiscoveryRequest that the state machine reads."""

    type_url: str
    resource_names: tuple[str, ...] = ()
    version_info: str = ""
    response_nonce: str = ""
    error_message: str | None = None  # set iff the request carries error_detail (a NACK)
    error_code: int = 0
    # ``resource_names`` as a set, built once per request object: a request read
    # once and handed to many streams (``request_reader``) builds it once.
    name_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name_set", frozenset(self.resource_names))


@dataclass(frozen=True, slots=True)
class NackRecord:
    """A response the client rejected."""

    version: str  # the version we sent and the client rejected
    nonce: str
    message: str  # the client's error_detail.message
    at: float  # the ``now`` passed to ``receive``
    code: int = 0


@dataclass(frozen=True, slots=True)
class Response:
    """A planned DiscoveryResponse.

    ``names`` is None when the response carries every resource of ``source``
    (so its encoding can be shared by all streams that get the same set);
    otherwise it lists the included resource names, sorted.
    """

    type_url: str
    version: str
    nonce: str
    source: ResourceSet
    names: tuple[str, ...] | None = None
    # Delta xDS only: names the client holds that no longer exist, sorted.
    removed: tuple[str, ...] = ()
    # Delta xDS only: the nonce is derived from the content (``shared_nonce``), so
    # every stream sent this response gets the same bytes (one encoding for all).
    shared: bool = False

    @property
    def resource_count(self) -> int:
        return len(self.source.resources) if self.names is None else len(self.names)


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What ``receive`` decided, and what to send because of it."""

    kind: RequestKind
    type_url: str
    responses: tuple[Response, ...] = ()
    subscription_changed: bool = False
    nack: NackRecord | None = None
    first_unknown: bool = False  # UNKNOWN_TYPE only: first time this stream used the URL


@dataclass(slots=True)
class TypeState:
    """Per-type bookkeeping. Read it; only ``AdsStreamState`` changes it."""

    type_url: str
    full_state: bool
    requested: bool = False
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    sent_version: str = ""
    sent_nonce: str = ""
    acked_version: str = ""
    nack: NackRecord | None = None  # the last NACK, cleared by a later ACK
    # The newest set this client is in sync with (sent, or unchanged for it).
    synced: ResourceSet | None = None
    # Non-wildcard LDS/CDS only: name -> bytes of the last response.
    delivered: dict[str, bytes] = field(default_factory=dict)


class DiffCache:
    """Memoizes which resources differ between two sets, for the duration of one push.

    Entries keep both sets alive, so object ids stay unique while cached;
    drop the cache when the push is done.
    """

    __slots__ = ("_entries", "_gone", "_shared")

    def __init__(self) -> None:
        self._entries: dict[tuple[int, int], tuple[ResourceSet, ResourceSet, frozenset[str]]] = {}
        self._gone: dict[tuple[int, int], tuple[ResourceSet, ResourceSet, frozenset[str]]] = {}
        self._shared: dict[tuple[object, ...], tuple[tuple[object, ...], object]] = {}

    def shared(self, key: str, anchors: tuple[object, ...], make: Callable[[], _T]) -> _T:
        """``make()``, once per push for ``key`` and the very objects ``anchors``.

        Streams with the same view plan the same response from the same sets;
        the first one computes it and the others take it. The anchors are kept
        alive with the value, so their ids are not reused while it is cached.
        """
        ident = (key, *map(id, anchors))
        entry = self._shared.get(ident)
        if entry is not None and all(a is b for a, b in zip(entry[0], anchors, strict=True)):
            return cast(_T, entry[1])
        value = make()
        self._shared[ident] = (anchors, value)
        return value

    def changed(self, old: ResourceSet, new: ResourceSet) -> frozenset[str]:
        """Names in ``new`` that are absent from ``old`` or have different bytes."""
        if old is new or old.version == new.version:
            return frozenset()
        key = (id(old), id(new))
        entry = self._entries.get(key)
        if entry is not None and entry[0] is old and entry[1] is new:
            return entry[2]
        result = _diff(old, new)
        self._entries[key] = (old, new, result)
        return result

    def removed(self, old: ResourceSet, new: ResourceSet) -> frozenset[str]:
        """Names in ``old`` that are absent from ``new``."""
        if old is new or old.version == new.version:
            return frozenset()
        key = (id(old), id(new))
        entry = self._gone.get(key)
        if entry is not None and entry[0] is old and entry[1] is new:
            return entry[2]
        result = gone(old, new)
        self._gone[key] = (old, new, result)
        return result


def gone(old: ResourceSet, new: ResourceSet) -> frozenset[str]:
    """Names of ``old`` that ``new`` lacks (parts present in both are skipped)."""
    if old is new or old.version == new.version:
        return frozenset()
    kept = {id(p) for p in new.parts}
    after = new.resources
    out: set[str] = set()
    for part in old.parts or (old,):
        if id(part) in kept:
            continue
        out.update(n for n in part.resources if n not in after)
    return frozenset(out)


def _diff(old: ResourceSet, new: ResourceSet) -> frozenset[str]:
    if old is new or old.version == new.version:
        return frozenset()
    # Composed sets: a part present in both (names never repeat across parts)
    # cannot hold a difference, so only the other parts are compared.
    kept = {id(p) for p in old.parts}
    before = old.resources
    changed: set[str] = set()
    for part in new.parts or (new,):
        if id(part) in kept:
            continue
        changed.update(n for n, b in part.resources.items() if before.get(n) != b)
    return frozenset(changed)


class StreamStateBase:
    """What SotW and delta ADS streams share: per-type state, the newest sets, nonces,
    and ``update`` (push order, re-warming of modified clusters). Subclasses read
    requests (``receive``) and plan responses (``_plan``)."""

    protocol = "sotw"  # the ADS variant, as status reports it

    def __init__(
        self,
        known_types: Iterable[str] = ADS_ORDER,
        nonce_prefix: str = "",
        name_sets: dict[frozenset[str], frozenset[str]] | None = None,
    ) -> None:
        """``name_sets`` is shared by the streams of one server: equal subscription
        sets (thousands of proxies asking for the same 3000 clusters) are then kept
        once instead of once per stream."""
        self._name_sets = name_sets
        self._order: tuple[str, ...] = tuple(known_types)
        self._types: dict[str, TypeState] = {
            url: TypeState(type_url=url, full_state=url in _FULL_STATE_TYPES) for url in self._order
        }
        self._current: dict[str, ResourceSet] = {}
        self._unknown_seen: set[str] = set()
        self._nonce_prefix = nonce_prefix
        self._nonce_counter = 0
        # Clusters modified by the last CDS response whose load assignments
        # must be re-sent for Envoy to finish warming them.
        self._rewarm: frozenset[str] = frozenset()

    @property
    def types(self) -> Mapping[str, TypeState]:
        """Per-type state for every known type, in push order."""
        return self._types

    def current(self, type_url: str) -> ResourceSet | None:
        """The newest set fed to ``update`` for a type."""
        return self._current.get(type_url)

    def synced_sets(self) -> dict[str, ResourceSet]:
        """Per subscribed type, the newest set the client was brought in sync with."""
        return {url: ts.synced for url, ts in self._types.items() if ts.synced is not None}

    # -- input: new resources ------------------------------------------------------------

    def update(
        self, sets: Mapping[str, ResourceSet], diffs: DiffCache | None = None
    ) -> list[Response]:
        """Store the newest sets and plan responses for what changed, in push order.

        Types missing from ``sets`` keep their previous set; unknown types are
        ignored. Pass one ``DiffCache`` to all streams' updates of one push to
        share the work of comparing sets.
        """
        responses: list[Response] = []
        self._rewarm = frozenset()
        for url in self._order:
            new = sets.get(url)
            if new is not None:
                self._current[url] = new
            elif not (url == ENDPOINT_TYPE and self._rewarm):
                continue
            ts = self._types[url]
            if ts.requested:
                response = self._plan(ts, diffs=diffs)
                if response is not None:
                    responses.append(response)
        self._rewarm = frozenset()
        return responses

    # -- planning --------------------------------------------------------------------------

    def _plan(
        self, ts: TypeState, added: frozenset[str] = frozenset(), diffs: DiffCache | None = None
    ) -> Response | None:
        """Plan the response that brings the client in sync with the current set, if any.

        ``added`` are names just subscribed to: sent even if unchanged.
        """
        raise NotImplementedError

    def _next_nonce(self) -> str:
        self._nonce_counter += 1
        return f"{self._nonce_prefix}{self._nonce_counter}"

    def _emit(self, ts: TypeState, cur: ResourceSet, names: Sequence[str] | None) -> Response:
        """Record and return a response with the stream's next nonce (SotW)."""
        nonce = self._next_nonce()
        ts.sent_version = cur.version
        ts.sent_nonce = nonce
        return Response(
            type_url=ts.type_url,
            version=cur.version,
            nonce=nonce,
            source=cur,
            names=None if names is None else tuple(names),
        )


def without_wildcard(names: frozenset[str]) -> frozenset[str]:
    """``names`` less ``*``; the very same (interned) object when it has none, so
    streams sent the same request hold one set, found again by identity."""
    return names - {WILDCARD} if WILDCARD in names else names


class AdsStreamState(StreamStateBase):
    """SotW ADS bookkeeping for one stream. Pure: no I/O, no clock, no protobuf."""

    # -- input: a request from the client ---------------------------------------------

    def receive(self, request: ClientRequest, now: float) -> RequestOutcome:
        """Classify a request, update the state, and plan responses to send."""
        ts = self._types.get(request.type_url)
        if ts is None:
            first = request.type_url not in self._unknown_seen
            if first and len(self._unknown_seen) < _MAX_REMEMBERED_UNKNOWN:
                self._unknown_seen.add(request.type_url)
            return RequestOutcome(RequestKind.UNKNOWN_TYPE, request.type_url, first_unknown=first)

        names = request.name_set
        if self._name_sets is not None:
            names = self._name_sets.setdefault(names, names)
        if not ts.requested:
            ts.requested = True
            # Wildcard applies to LDS/CDS only, and only on the first request.
            ts.wildcard = ts.full_state and (not names or WILDCARD in names)
            ts.names = without_wildcard(names)
            return RequestOutcome(
                RequestKind.SUBSCRIBE,
                ts.type_url,
                responses=self._plan_tuple(ts, ts.names),
                subscription_changed=True,
            )

        if request.response_nonce != ts.sent_nonce:
            return RequestOutcome(RequestKind.STALE, ts.type_url)

        kind = RequestKind.SUBSCRIBE
        nack: NackRecord | None = None
        if ts.sent_nonce:  # a reply to a response (with nothing sent yet, it is a re-request)
            if request.error_message is not None:
                kind = RequestKind.NACK
                nack = NackRecord(
                    version=ts.sent_version,
                    nonce=ts.sent_nonce,
                    message=request.error_message,
                    at=now,
                    code=request.error_code,
                )
                ts.nack = nack
            else:
                kind = RequestKind.ACK
                ts.acked_version = request.version_info
                ts.nack = None

        changed = False
        responses: tuple[Response, ...] = ()
        # Interned: an unchanged subscription is the very set held (no element compare).
        if not ts.wildcard and names is not ts.names and names != ts.names:
            changed = True
            added = names - ts.names
            ts.names = without_wildcard(names)
            responses = self._plan_tuple(ts, added=added)
        return RequestOutcome(
            kind, ts.type_url, responses=responses, subscription_changed=changed, nack=nack
        )

    # -- planning (SotW) ---------------------------------------------------------------

    def _plan_tuple(self, ts: TypeState, added: frozenset[str]) -> tuple[Response, ...]:
        response = self._plan(ts, added=added)
        # A subscription change cannot modify clusters already delivered (the
        # current set is the one the last update synced): nothing to re-warm.
        self._rewarm = frozenset()
        return () if response is None else (response,)

    def _plan(
        self, ts: TypeState, added: frozenset[str] = frozenset(), diffs: DiffCache | None = None
    ) -> Response | None:
        """Plan the response that brings the client in sync with the current set, if any.

        ``added`` are names just subscribed to: sent even if unchanged.
        """
        cur = self._current.get(ts.type_url)
        if cur is None:
            return None
        if ts.full_state:
            return self._plan_full_state(ts, cur, diffs)
        if ts.type_url == ENDPOINT_TYPE and self._rewarm:
            added = added | (self._rewarm & ts.names)
        return self._plan_partial(ts, cur, added, diffs)

    def _plan_full_state(
        self, ts: TypeState, cur: ResourceSet, diffs: DiffCache | None = None
    ) -> Response | None:
        if ts.wildcard:
            if ts.synced is not None and (ts.synced is cur or ts.synced.version == cur.version):
                ts.synced = cur
                return None
            if ts.type_url == CLUSTER_TYPE and ts.synced is not None:
                before = ts.synced.resources
                diff = diffs.changed(ts.synced, cur) if diffs is not None else _diff(ts.synced, cur)
                self._rewarm = frozenset(n for n in diff if n in before)
            ts.synced = cur
            return self._emit(ts, cur, None)
        resources = cur.resources
        selected = {n: resources[n] for n in ts.names if n in resources}
        if ts.synced is not None and selected == ts.delivered:
            ts.synced = cur
            return None
        if ts.type_url == CLUSTER_TYPE and ts.synced is not None:
            old = ts.delivered
            self._rewarm = frozenset(n for n, b in selected.items() if n in old and old[n] != b)
        ts.delivered = selected
        ts.synced = cur
        names = None if len(selected) == len(resources) else tuple(sorted(selected))
        return self._emit(ts, cur, names)

    def _plan_partial(
        self, ts: TypeState, cur: ResourceSet, added: frozenset[str], diffs: DiffCache | None
    ) -> Response | None:
        resources = cur.resources
        names = ts.names
        base = ts.synced
        if base is None:
            changed = {n for n in names if n in resources}
        else:
            # Resources that vanished from ``base`` and came back are in the
            # diff too (absent before), so they are re-sent.
            diff = diffs.changed(base, cur) if diffs is not None else _diff(base, cur)
            if len(diff) <= len(names):
                changed = {n for n in diff if n in names}
            else:
                changed = {n for n in names if n in diff}
            changed.update(n for n in added if n in resources)
        ts.synced = cur
        if not changed:
            return None
        return self._emit(ts, cur, None if len(changed) == len(resources) else sorted(changed))
