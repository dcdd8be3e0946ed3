"""Sans-IO bookkeeping for one incremental (delta) ADS stream.

Theory of operation
-------------------
Delta xDS (``DeltaAggregatedResources``) sends per resource instead of per
type: a response carries the resources that were added or changed, each with
its own version, and names the resources that were removed; a request
subscribes and unsubscribes names as differences. This module is the delta
counterpart of ``state.AdsStreamState`` and shares its base: the newest set
per type, push order (CDS, EDS, LDS, RDS, SDS), per-type status fields and
the re-sending of load assignments of modified clusters (``update``). It
performs no I/O and reads no clock.

Versions. A resource's version is a digest of its serialized bytes
(``ResourceSet.versions``), computed once per set object and shared by every
stream that gets the set. The response's ``system_version_info`` is the set
version, which is what status and proxy-status show as sent and ACKed.

What the client holds is kept implicitly, as for SotW: after every plan it
holds exactly ``synced`` (the newest set) restricted to what it subscribed
to (everything for a wildcard subscription). A push then sends
``diff(synced, current)`` restricted to the subscription, and names the
subscribed resources that vanished in ``removed_resources``; streams with the
same view share both set-to-set diffs (``DiffCache``). Nothing per resource is
stored per stream, so memory does not grow with proxies x resources.

Requests:

* The first request of a type subscribes. LDS and CDS are wildcard when it
  names nothing or ``*``; other types subscribe the names given. Its
  ``initial_resource_versions`` (a reconnecting client's inventory) replace
  the implicit knowledge once: only resources whose version differs are
  sent, and those it holds that no longer exist are removed. The first
  LDS/CDS subscription is always answered, even with nothing to send, so the
  client's initial fetch completes; another type with nothing to send is
  recorded as sent and ACKed in the current set version (the client said it
  holds exactly that), so status shows it in sync.
* Every request's ``resource_names_subscribe``/``unsubscribe`` are applied,
  whatever its nonce: they are differences, and dropping one would lose it.
  Every name subscribed (again) is sent if it exists; unsubscribed names are
  forgotten without a removal (the client dropped them itself). ``*`` in
  subscribe/unsubscribe turns the wildcard on or off (LDS/CDS).
* ``response_nonce`` pairs the request with one response: without
  ``error_detail`` it ACKs that response (its set version becomes the acked
  version), with it it NACKs it. A NACK is recorded and nothing is re-sent:
  the client keeps its last good resources and the next real change is
  pushed as usual (the same containment as SotW). A nonce this stream never
  sent, or already answered, is ``STALE`` (its subscription changes still
  apply).

Nonces are derived from a response's content (``shared_nonce``: type, set
version, and a digest of the names when the response carries only some of the
set or removes names), so every stream sent the same response gets the same
bytes and the encoder builds that frame once. A counter would make every
stream's frame unique and cost one multi-megabyte copy per stream.

A subscribed name that never existed is not answered (as SotW), so a client
waits for it as it would for a resource still coming; only resources the
client held are ever removed.

VHDS. Route configurations go out in VHDS form (``xds.build.vhds``): each
outbound one names ``vhds`` and its virtual hosts are ``VirtualHost``
resources, so an edit sends only the virtual hosts that changed. ``update``
splits the generator's RDS set (once per set, shared by every stream). Envoy's
VirtualHost subscription names nothing; it is answered as a wildcard over the
virtual hosts of the route configurations the stream subscribed over RDS, so
that set follows the RDS subscription (``_sync_vhds``): a route configuration
subscribed brings its virtual hosts, one unsubscribed takes them away.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pilotfish.xds.build.vhds import VhdsCache, VhdsSplit, joined, vhds_cache
from pilotfish.xds.server.state import (
    WILDCARD,
    DiffCache,
    NackRecord,
    RequestKind,
    RequestOutcome,
    Response,
    StreamStateBase,
    TypeState,
    gone,
    without_wildcard,
)
from pilotfish.xds.types import (
    ADS_ORDER,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    ROUTE_TYPE,
    TYPE_SHORT_NAMES,
    VHDS_TYPE,
    ResourceSet,
)

__all__ = ["DeltaRequest", "DeltaStreamState", "delta_request_from_proto", "shared_nonce"]

# Responses per type whose ACK is still awaited; older ones are forgotten
# (their answer then counts as stale), which bounds a client that never answers.
_MAX_IN_FLIGHT = 64
# As in SotW: distinct unknown type URLs remembered for "log once".
_MAX_REMEMBERED_UNKNOWN = 32


@dataclass(frozen=True, slots=True)
class DeltaRequest:
    """The fields of a DeltaDiscoveryRequest that the state machine reads."""

    type_url: str
    subscribe: tuple[str, ...] = ()
    unsubscribe: tuple[str, ...] = ()
    initial_versions: Mapping[str, str] = field(default_factory=dict)
    response_nonce: str = ""
    error_message: str | None = None  # set iff the request carries error_detail (a NACK)
    error_code: int = 0
    # ``subscribe``/``unsubscribe`` as sets, built once per request object: a request
    # read once and handed to many streams (``request_reader``) builds them once.
    subscribe_set: frozenset[str] = field(init=False, repr=False, compare=False)
    unsubscribe_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "subscribe_set", frozenset(self.subscribe))
        object.__setattr__(self, "unsubscribe_set", frozenset(self.unsubscribe))


def delta_request_from_proto(request: Any) -> DeltaRequest:
    """Extract what the state machine needs from a ``DeltaDiscoveryRequest``."""
    has_error = request.HasField("error_detail")
    return DeltaRequest(
        type_url=request.type_url,
        subscribe=tuple(request.resource_names_subscribe),
        unsubscribe=tuple(request.resource_names_unsubscribe),
        initial_versions=dict(request.initial_resource_versions),
        response_nonce=request.response_nonce,
        error_message=request.error_detail.message if has_error else None,
        error_code=request.error_detail.code if has_error else 0,
    )


class DeltaStreamState(StreamStateBase):
    """Delta ADS bookkeeping for one stream. Pure: no I/O, no clock, no protobuf."""

    protocol = "delta"

    def __init__(
        self,
        known_types: Iterable[str] = ADS_ORDER,
        nonce_prefix: str = "",
        name_sets: dict[frozenset[str], frozenset[str]] | None = None,
        vhds: VhdsCache | None = vhds_cache,
    ) -> None:
        """``vhds`` None serves route configurations with inline virtual hosts."""
        order = tuple(known_types)
        if vhds is not None and ROUTE_TYPE in order and VHDS_TYPE not in order:
            # Right after RDS: a route configuration arrives before its virtual hosts.
            at = order.index(ROUTE_TYPE) + 1
            order = (*order[:at], VHDS_TYPE, *order[at:])
        super().__init__(order, nonce_prefix, name_sets)
        self._vhds = vhds
        self._split: VhdsSplit | None = None
        # Per type: nonce -> set version of responses not answered yet, oldest first.
        self._in_flight: dict[str, OrderedDict[str, str]] = {u: OrderedDict() for u in self._order}
        # Per type: the client's initial_resource_versions, until the first plan.
        self._initial: dict[str, Mapping[str, str]] = {}
        # Clusters a reconnecting client held in another version: re-created,
        # they warm until their load assignments arrive, even unchanged ones.
        self._reconnect_rewarm: frozenset[str] = frozenset()
        # Whether the last inventory comparison had an inventory at all.
        self._initial_held = False

    @property
    def types(self) -> Mapping[str, TypeState]:
        """As the base's, with VHDS only once subscribed: a proxy whose route
        configurations are all inline (inbound only) never asks for it."""
        vhds = self._types.get(VHDS_TYPE)
        if vhds is None or vhds.requested:
            return self._types
        return {url: ts for url, ts in self._types.items() if url != VHDS_TYPE}

    def synced_sets(self) -> dict[str, ResourceSet]:
        """As the base's, with the virtual hosts held over VHDS back in their route
        configurations (as Envoy's config dump shows them): what reads route
        configurations from here (``/debug/config_dump``) sees them whole."""
        out = super().synced_sets()
        vhosts = out.pop(VHDS_TYPE, None)
        routes = out.get(ROUTE_TYPE)
        if routes is not None and vhosts is not None:
            out[ROUTE_TYPE] = joined(routes, vhosts)
        return out

    # -- input: new resources ------------------------------------------------------------

    def update(
        self, sets: Mapping[str, ResourceSet], diffs: DiffCache | None = None
    ) -> list[Response]:
        """As ``StreamStateBase.update``, with RDS in VHDS form (see the module doc)."""
        routes = sets.get(ROUTE_TYPE)
        if self._vhds is not None and routes is not None:
            self._split = self._vhds.split(routes)
            sets = {
                **sets,
                ROUTE_TYPE: self._split.routes,
                VHDS_TYPE: self._subscribed_vhosts(self._split),
            }
        return super().update(sets, diffs)

    def _subscribed_vhosts(self, split: VhdsSplit) -> ResourceSet:
        assert self._vhds is not None
        return self._vhds.subscribed(split, self._types[ROUTE_TYPE].names)

    def _sync_vhds(self) -> Response | None:
        """After an RDS subscription change: the virtual hosts now wanted, planned."""
        split = self._split
        if split is None:
            return None
        self._current[VHDS_TYPE] = self._subscribed_vhosts(split)
        ts = self._types[VHDS_TYPE]
        return self._plan(ts) if ts.requested else None

    # -- input: a request from the client ---------------------------------------------

    def receive(self, request: DeltaRequest, now: float) -> RequestOutcome:
        """Apply a request's subscription changes and ACK/NACK; plan what to send."""
        outcome = self._receive(request, now)
        if request.type_url != ROUTE_TYPE or not outcome.subscription_changed:
            return outcome
        vhosts = self._sync_vhds()
        if vhosts is None:
            return outcome
        return dataclasses.replace(outcome, responses=(*outcome.responses, vhosts))

    def _receive(self, request: DeltaRequest, now: float) -> RequestOutcome:
        ts = self._types.get(request.type_url)
        if ts is None:
            first = request.type_url not in self._unknown_seen
            if first and len(self._unknown_seen) < _MAX_REMEMBERED_UNKNOWN:
                self._unknown_seen.add(request.type_url)
            return RequestOutcome(RequestKind.UNKNOWN_TYPE, request.type_url, first_unknown=first)

        kind, nack = self._answer(ts, request, now)
        subscribe = request.subscribe_set
        unsubscribe = request.unsubscribe_set
        if not ts.requested:
            ts.requested = True
            # VHDS: the virtual hosts of the RDS subscription, whatever it names.
            ts.wildcard = ts.type_url == VHDS_TYPE or (
                ts.full_state and (not subscribe or WILDCARD in subscribe)
            )
            self._set_names(
                ts, without_wildcard(subscribe - unsubscribe if unsubscribe else subscribe)
            )
            self._initial[ts.type_url] = request.initial_versions
            responses = [self._plan(ts)]
            self._rewarm = frozenset()
            eds = self._types.get(ENDPOINT_TYPE)
            if self._reconnect_rewarm and eds is not None and eds.synced is not None:
                # EDS was subscribed first: re-send the re-created clusters' endpoints now.
                responses.append(self._plan(eds))
            return RequestOutcome(
                RequestKind.SUBSCRIBE,
                ts.type_url,
                responses=tuple(r for r in responses if r is not None),
                subscription_changed=True,
            )
        if not subscribe and not unsubscribe:
            return RequestOutcome(kind, ts.type_url, nack=nack)

        added = subscribe - {WILDCARD}
        if ts.full_state and WILDCARD in subscribe and not ts.wildcard:
            ts.wildcard = True
            cur = self._current.get(ts.type_url)
            # The client holds only its named resources: send it everything else.
            added = added | frozenset(cur.resources if cur is not None else ())
        if WILDCARD in unsubscribe:
            ts.wildcard = False
        self._set_names(ts, (ts.names | added) - unsubscribe)
        response = self._plan(ts, added=added)
        self._rewarm = frozenset()
        return RequestOutcome(
            kind,
            ts.type_url,
            responses=() if response is None else (response,),
            subscription_changed=True,
            nack=nack,
        )

    def _set_names(self, ts: TypeState, names: frozenset[str]) -> None:
        if self._name_sets is not None:
            names = self._name_sets.setdefault(names, names)
        ts.names = names

    def _answer(
        self, ts: TypeState, request: DeltaRequest, now: float
    ) -> tuple[RequestKind, NackRecord | None]:
        """Classify the ACK/NACK part of a request (SUBSCRIBE when it has no nonce)."""
        nonce = request.response_nonce
        if not nonce:
            return RequestKind.SUBSCRIBE, None
        in_flight = self._in_flight[ts.type_url]
        version = in_flight.get(nonce)
        if version is None:
            return RequestKind.STALE, None
        # Responses are answered in order: this one and every older one are done.
        while in_flight:
            done, _ = in_flight.popitem(last=False)
            if done == nonce:
                break
        if request.error_message is None:
            ts.acked_version = version
            ts.nack = None
            return RequestKind.ACK, None
        ts.nack = NackRecord(
            version=version,
            nonce=nonce,
            message=request.error_message,
            at=now,
            code=request.error_code,
        )
        return RequestKind.NACK, ts.nack

    # -- planning ------------------------------------------------------------------------

    def _plan(
        self, ts: TypeState, added: frozenset[str] = frozenset(), diffs: DiffCache | None = None
    ) -> Response | None:
        cur = self._current.get(ts.type_url)
        if cur is None:
            return None
        if ts.type_url == ENDPOINT_TYPE:
            rewarm = self._rewarm | self._reconnect_rewarm
            if rewarm:
                added = added | (rewarm & ts.names)
                self._reconnect_rewarm = self._reconnect_rewarm - ts.names
        base = ts.synced
        if base is cur and not added:
            return None  # the very set the client was synced to: nothing to send
        if base is None and ts.wildcard and not self._initial.get(ts.type_url):
            # A fresh wildcard subscription: the whole set, one shared encoding.
            self._initial.pop(ts.type_url, None)
            ts.synced = cur
            return self._record(ts, _delta_response(ts.type_url, cur, None, ()))
        if base is not None and not added and diffs is not None:
            # A push: streams with the same subscription and sync point get the very
            # same response, planned once (the names, their digest, the Response).
            synced_base = base
            plan = diffs.shared(
                f"{ts.type_url}{'*' if ts.wildcard else ''}",
                (synced_base, cur, ts.names),
                lambda: self._synced_plan(ts, synced_base, cur, diffs),
            )
            ts.synced = cur
            if ts.type_url == CLUSTER_TYPE:
                self._rewarm = plan.rewarm
            return None if plan.response is None else self._record(ts, plan.response)
        if base is None:
            changed, removed = self._against_inventory(ts, cur)
            changed.update(n for n in added if n in cur.resources)
            must_answer = ts.full_state
            if not (changed or removed or must_answer) and self._initial_held:
                # The client already holds this very set: it is in sync with it.
                ts.sent_version = ts.acked_version = cur.version
        else:
            changed, removed = self._against_synced(ts, base, cur, diffs)
            if ts.type_url == CLUSTER_TYPE:
                self._rewarm = _held_before(changed, base)
            changed.update(n for n in added if n in cur.resources)
            must_answer = False
        ts.synced = cur
        if not (changed or removed or must_answer):
            return None
        return self._record(ts, _delta_response(ts.type_url, cur, changed, removed))

    def _synced_plan(
        self, ts: TypeState, base: ResourceSet, cur: ResourceSet, diffs: DiffCache
    ) -> _SyncedPlan:
        """A push's response for ``ts``'s subscription, synced to ``base`` until now."""
        changed, removed = self._against_synced(ts, base, cur, diffs)
        rewarm = _held_before(changed, base) if ts.type_url == CLUSTER_TYPE else frozenset()
        if not (changed or removed):
            return _SyncedPlan(None, rewarm)
        return _SyncedPlan(_delta_response(ts.type_url, cur, changed, removed), rewarm)

    def _against_inventory(self, ts: TypeState, cur: ResourceSet) -> tuple[set[str], set[str]]:
        """First plan after subscribing: what differs from what the client says it holds."""
        known = self._initial.pop(ts.type_url, None) or {}
        self._initial_held = bool(known)
        resources = cur.resources
        versions = cur.versions()
        wanted: Iterable[str] = resources if ts.wildcard else cur.present(ts.names)
        if not known:
            return set(wanted), set()
        changed = {n for n in wanted if known.get(n) != versions[n]}
        if ts.type_url == CLUSTER_TYPE:
            self._reconnect_rewarm = frozenset(n for n in changed if n in known)
        removed = {n for n in known if n not in resources and (ts.wildcard or n in ts.names)}
        return changed, removed

    def _against_synced(
        self,
        ts: TypeState,
        base: ResourceSet,
        cur: ResourceSet,
        diffs: DiffCache | None,
    ) -> tuple[set[str], set[str]]:
        """What changed since the set the client was last brought in sync with."""
        diff = diffs.changed(base, cur) if diffs is not None else _changed(base, cur)
        vanished = diffs.removed(base, cur) if diffs is not None else gone(base, cur)
        if ts.wildcard:
            return set(diff), set(vanished)
        names = ts.names
        return {n for n in diff if n in names}, {n for n in vanished if n in names}

    def _record(self, ts: TypeState, response: Response) -> Response:
        """Note ``response`` as sent on this stream, awaiting its ACK."""
        ts.sent_version = response.version
        ts.sent_nonce = response.nonce
        in_flight = self._in_flight[ts.type_url]
        in_flight[response.nonce] = response.version
        while len(in_flight) > _MAX_IN_FLIGHT:
            in_flight.popitem(last=False)
        return response


@dataclass(frozen=True, slots=True)
class _SyncedPlan:
    """What a push sends every stream with one subscription and sync point."""

    response: Response | None
    rewarm: frozenset[str]  # CDS: changed clusters the client held (re-sent endpoints)


def _held_before(changed: Iterable[str], base: ResourceSet) -> frozenset[str]:
    """Changed clusters the client already held: re-created, they warm until their
    load assignments come again, so those are re-sent even if unchanged."""
    return frozenset(n for n in changed if n in base.resources)


def _delta_response(
    type_url: str, cur: ResourceSet, changed: Collection[str] | None, removed: Iterable[str]
) -> Response:
    """The response carrying ``changed`` (None or all of ``cur``: the whole set) and
    naming ``removed``. Its nonce is derived from what it carries, never from a
    counter: streams sent the same response share its nonce, so the encoder writes
    one frame for all of them (see ``delta_encode``). On one stream it is still
    unique among the responses awaiting an answer: a repeat would carry exactly
    the same content."""
    # ``changed`` names only resources of ``cur``, so as many as ``cur`` holds is all
    # of them: known without sorting thousands of names per stream.
    names: tuple[str, ...] | None = None
    if changed is not None and len(changed) != len(cur.resources):
        names = tuple(sorted(changed))
    gone_names = tuple(sorted(removed))
    return Response(
        type_url=type_url,
        version=cur.version,
        nonce=shared_nonce(type_url, cur, names, gone_names),
        source=cur,
        names=names,
        removed=gone_names,
        shared=True,
    )


def shared_nonce(
    type_url: str,
    resource_set: ResourceSet,
    names: Sequence[str] | None = None,
    removed: Sequence[str] = (),
) -> str:
    """The nonce of a delta response: the type, the set version and, for a response
    carrying only some of the set or removing names, a digest of those names."""
    nonce = f"{TYPE_SHORT_NAMES.get(type_url, 'X')}-{resource_set.version}"
    if names is None and not removed:
        return nonce
    digest = hashlib.blake2b(digest_size=6)
    digest.update(b"*" if names is None else "\0".join(names).encode())
    digest.update(b"\1")
    digest.update("\0".join(removed).encode())
    return f"{nonce}-{digest.hexdigest()}"


def _changed(old: ResourceSet, new: ResourceSet) -> frozenset[str]:
    return DiffCache().changed(old, new)
