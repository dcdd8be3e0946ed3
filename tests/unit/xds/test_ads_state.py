"""The sans-IO ADS state machine, without gRPC."""

from __future__ import annotations

from pilotfish.xds.server.state import (
    AdsStreamState,
    ClientRequest,
    DiffCache,
    RequestKind,
    Response,
)
from pilotfish.xds.types import (
    ADS_ORDER,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    ResourceSet,
)


def rs(type_url: str, **resources: bytes) -> ResourceSet:
    return ResourceSet(type_url, dict(resources))


def full(
    cds: dict[str, bytes] | None = None,
    eds: dict[str, bytes] | None = None,
    lds: dict[str, bytes] | None = None,
    rds: dict[str, bytes] | None = None,
) -> dict[str, ResourceSet]:
    return {
        CLUSTER_TYPE: ResourceSet(CLUSTER_TYPE, cds if cds is not None else {"a": b"A", "b": b"B"}),
        ENDPOINT_TYPE: ResourceSet(
            ENDPOINT_TYPE, eds if eds is not None else {"a": b"EA", "b": b"EB"}
        ),
        LISTENER_TYPE: ResourceSet(LISTENER_TYPE, lds if lds is not None else {"l": b"L"}),
        ROUTE_TYPE: ResourceSet(ROUTE_TYPE, rds if rds is not None else {"r": b"R", "s": b"S"}),
    }


def req(
    type_url: str, *names: str, nonce: str = "", version: str = "", error: str | None = None
) -> ClientRequest:
    return ClientRequest(
        type_url=type_url,
        resource_names=names,
        version_info=version,
        response_nonce=nonce,
        error_message=error,
        error_code=3 if error is not None else 0,
    )


def contents(response: Response) -> dict[str, bytes]:
    res = response.source.resources
    names = sorted(res) if response.names is None else response.names
    return {n: res[n] for n in names}


def subscribed_state(sets: dict[str, ResourceSet] | None = None) -> AdsStreamState:
    """A stream that subscribed to all four types like Envoy does, and ACKed everything."""
    state = AdsStreamState()
    assert state.update(sets or full()) == []  # nothing subscribed yet: nothing to send
    for url, names in (
        (CLUSTER_TYPE, ()),
        (ENDPOINT_TYPE, ("a", "b")),
        (LISTENER_TYPE, ()),
        (ROUTE_TYPE, ("r", "s")),
    ):
        out = state.receive(req(url, *names), now=0.0)
        assert out.kind is RequestKind.SUBSCRIBE
        (resp,) = out.responses
        ack = state.receive(req(url, *names, nonce=resp.nonce, version=resp.version), now=0.0)
        assert ack.kind is RequestKind.ACK
        assert ack.responses == ()
    return state


def test_wildcard_cds_gets_full_set_and_ack_is_recorded() -> None:
    state = AdsStreamState()
    state.update(full())
    out = state.receive(req(CLUSTER_TYPE), now=1.0)
    assert out.kind is RequestKind.SUBSCRIBE
    (resp,) = out.responses
    assert resp.names is None  # whole set: shareable encoding
    assert contents(resp) == {"a": b"A", "b": b"B"}
    assert resp.version == state.current(CLUSTER_TYPE).version  # type: ignore[union-attr]
    ts = state.types[CLUSTER_TYPE]
    assert ts.wildcard and ts.sent_nonce == resp.nonce and ts.acked_version == ""

    ack = state.receive(req(CLUSTER_TYPE, nonce=resp.nonce, version=resp.version), now=2.0)
    assert ack.kind is RequestKind.ACK
    assert ack.responses == ()
    assert state.types[CLUSTER_TYPE].acked_version == resp.version


def test_explicit_star_is_wildcard_and_later_names_are_ignored() -> None:
    state = AdsStreamState()
    state.update(full())
    (resp,) = state.receive(req(LISTENER_TYPE, "*"), now=0).responses
    assert state.types[LISTENER_TYPE].wildcard
    out = state.receive(req(LISTENER_TYPE, "zzz", nonce=resp.nonce, version=resp.version), now=0)
    assert out.kind is RequestKind.ACK
    assert not out.subscription_changed and out.responses == ()


def test_non_wildcard_cds_sends_only_named_clusters() -> None:
    state = AdsStreamState()
    state.update(full(cds={"a": b"A", "b": b"B", "c": b"C"}))
    (resp,) = state.receive(req(CLUSTER_TYPE, "a", "c"), now=0).responses
    assert not state.types[CLUSTER_TYPE].wildcard
    assert contents(resp) == {"a": b"A", "c": b"C"}
    # A change to an unsubscribed cluster sends nothing; one to a named cluster
    # sends every named cluster (state of the world), but not the others.
    assert state.update(full(cds={"a": b"A", "b": b"B2", "c": b"C"})) == []
    (push,) = state.update(full(cds={"a": b"A2", "b": b"B2", "c": b"C"}))
    assert contents(push) == {"a": b"A2", "c": b"C"}


def test_nack_is_recorded_and_not_resent_until_a_real_change() -> None:
    state = subscribed_state()
    acked = state.types[LISTENER_TYPE].acked_version
    bad = full(lds={"l": b"BAD"})
    (push,) = state.update(bad)
    assert push.type_url == LISTENER_TYPE

    nack = state.receive(
        req(LISTENER_TYPE, nonce=push.nonce, version=acked, error="invalid listener"), now=42.0
    )
    assert nack.kind is RequestKind.NACK
    assert nack.responses == ()
    ts = state.types[LISTENER_TYPE]
    assert ts.nack is not None
    assert (ts.nack.message, ts.nack.version, ts.nack.nonce, ts.nack.at) == (
        "invalid listener",
        push.version,
        push.nonce,
        42.0,
    )
    assert ts.acked_version == acked  # still the old, accepted version

    # The same (rejected) config again: nothing is re-sent, no loop.
    assert state.update(full(lds={"l": b"BAD"})) == []
    assert state.update(bad) == []

    # A real change sends a new version; its ACK clears the NACK.
    (fixed,) = state.update(full(lds={"l": b"GOOD"}))
    assert fixed.version != push.version
    state.receive(req(LISTENER_TYPE, nonce=fixed.nonce, version=fixed.version), now=50.0)
    assert state.types[LISTENER_TYPE].nack is None
    assert state.types[LISTENER_TYPE].acked_version == fixed.version


def test_stale_and_garbage_nonces_are_ignored() -> None:
    state = subscribed_state()
    # (each modifies cluster "a", so its assignment follows: see the re-warm tests)
    first, _ = state.update(full(cds={"a": b"A2", "b": b"B"}))
    second, _ = state.update(full(cds={"a": b"A3", "b": b"B"}))
    before = state.types[CLUSTER_TYPE].acked_version

    # ACK of the older response arrives late: stale, ignored (also as NACK).
    for r in (
        req(CLUSTER_TYPE, nonce=first.nonce, version=first.version),
        req(CLUSTER_TYPE, nonce=first.nonce, error="boom"),
        req(CLUSTER_TYPE, nonce="garbage\x00", version="x"),
        req(CLUSTER_TYPE, nonce="", version="x"),
    ):
        out = state.receive(r, now=0)
        assert out.kind is RequestKind.STALE
        assert out.responses == ()
    assert state.types[CLUSTER_TYPE].acked_version == before
    assert state.types[CLUSTER_TYPE].nack is None
    # The ACK of the latest response counts.
    out = state.receive(req(CLUSTER_TYPE, nonce=second.nonce, version=second.version), now=0)
    assert out.kind is RequestKind.ACK
    assert state.types[CLUSTER_TYPE].acked_version == second.version

    # A stale EDS request with a new subscription is ignored too...
    eds_nonce = state.types[ENDPOINT_TYPE].sent_nonce
    out = state.receive(req(ENDPOINT_TYPE, "a", "b", "new", nonce="old"), now=0)
    assert out.kind is RequestKind.STALE and not out.subscription_changed
    assert "new" not in state.types[ENDPOINT_TYPE].names
    # ...but honoured when it carries the latest nonce.
    out = state.receive(req(ENDPOINT_TYPE, "a", "b", "new", nonce=eds_nonce), now=0)
    assert out.kind is RequestKind.ACK and out.subscription_changed
    assert "new" in state.types[ENDPOINT_TYPE].names


def test_eds_change_sends_only_changed_resources() -> None:
    state = subscribed_state()
    (push,) = state.update(full(eds={"a": b"EA", "b": b"EB-changed"}))
    assert push.type_url == ENDPOINT_TYPE
    assert push.names == ("b",)
    assert contents(push) == {"b": b"EB-changed"}


def test_rds_change_sends_only_changed_route_configs() -> None:
    state = subscribed_state()
    (push,) = state.update(full(rds={"r": b"R2", "s": b"S"}))
    assert push.type_url == ROUTE_TYPE
    assert contents(push) == {"r": b"R2"}


def test_cds_change_sends_the_whole_set() -> None:
    state = subscribed_state()
    push, rewarm = state.update(full(cds={"a": b"A2", "b": b"B"}))
    assert push.type_url == CLUSTER_TYPE
    assert push.names is None
    assert contents(push) == {"a": b"A2", "b": b"B"}
    assert rewarm.type_url == ENDPOINT_TYPE


def test_modified_cluster_gets_its_unchanged_assignment_again() -> None:
    # Envoy re-creates a modified cluster and keeps it warming until an EDS
    # response for it arrives, even if the assignment is the same.
    state = subscribed_state()
    cds, eds = state.update(full(cds={"a": b"A2", "b": b"B"}))
    assert cds.type_url == CLUSTER_TYPE
    assert eds.type_url == ENDPOINT_TYPE and contents(eds) == {"a": b"EA"}
    assert int(eds.nonce) > int(cds.nonce)
    # Also when the push carries no new EDS set at all.
    sets = full(cds={"a": b"A3", "b": b"B2"})
    del sets[ENDPOINT_TYPE]
    cds, eds = state.update(sets)
    assert contents(eds) == {"a": b"EA", "b": b"EB"}
    # An added cluster is not re-sent (the client subscribes to it), nor is
    # anything sent again once the clusters are unchanged.
    (cds,) = state.update(full(cds={"a": b"A3", "b": b"B2", "c": b"C"}))
    assert cds.type_url == CLUSTER_TYPE
    assert state.update(full(cds={"a": b"A3", "b": b"B2", "c": b"C"})) == []


def test_modified_cluster_and_changed_assignment_come_in_one_eds_response() -> None:
    state = subscribed_state()
    _, eds = state.update(full(cds={"a": b"A2", "b": b"B"}, eds={"a": b"EA", "b": b"EB2"}))
    assert contents(eds) == {"a": b"EA", "b": b"EB2"}


def test_removed_cluster_yields_full_cds_without_it() -> None:
    state = subscribed_state()
    (push,) = state.update(full(cds={"a": b"A"}))
    assert contents(push) == {"a": b"A"}


def test_unchanged_sets_send_nothing_even_as_new_objects() -> None:
    state = subscribed_state()
    assert state.update(full()) == []


def test_changes_come_in_ads_order() -> None:
    state = subscribed_state()
    pushes = state.update(
        full(cds={"a": b"A9"}, eds={"a": b"E9", "b": b"EB"}, lds={"l": b"L9"}, rds={"r": b"R9"})
    )
    assert [p.type_url for p in pushes] == list(ADS_ORDER)
    nonces = [int(p.nonce) for p in pushes]
    assert nonces == sorted(set(nonces))


def test_eds_change_to_unsubscribed_resource_sends_nothing() -> None:
    state = subscribed_state()
    assert state.update(full(eds={"a": b"EA", "b": b"EB", "other": b"X"})) == []
    assert state.types[ENDPOINT_TYPE].synced is state.current(ENDPOINT_TYPE)


def test_new_eds_subscription_sends_new_names_only() -> None:
    state = subscribed_state(full(eds={"a": b"EA", "b": b"EB", "c": b"EC"}))
    nonce = state.types[ENDPOINT_TYPE].sent_nonce
    version = state.types[ENDPOINT_TYPE].sent_version
    out = state.receive(req(ENDPOINT_TYPE, "a", "b", "c", nonce=nonce, version=version), now=0)
    assert out.kind is RequestKind.ACK and out.subscription_changed
    (resp,) = out.responses
    assert contents(resp) == {"c": b"EC"}


def test_resubscribing_sends_again_even_if_unchanged() -> None:
    state = subscribed_state()
    ts = state.types[ENDPOINT_TYPE]
    out = state.receive(req(ENDPOINT_TYPE, "a", nonce=ts.sent_nonce, version=ts.sent_version), 0)
    assert out.subscription_changed and out.responses == ()  # unsubscribed b: nothing to send
    assert state.update(full(eds={"a": b"EA", "b": b"EB-changed"})) == []  # b not watched
    out = state.receive(req(ENDPOINT_TYPE, "a", "b", nonce=ts.sent_nonce), 0)
    (resp,) = out.responses
    assert contents(resp) == {"b": b"EB-changed"}


def test_eds_name_that_appears_later_is_sent_when_it_exists() -> None:
    state = AdsStreamState()
    state.update(full(eds={}))
    out = state.receive(req(ENDPOINT_TYPE, "a"), now=0)
    assert out.kind is RequestKind.SUBSCRIBE and out.responses == ()
    # Re-requests before anything was sent carry the empty nonce: not stale.
    out = state.receive(req(ENDPOINT_TYPE, "a", "b"), now=0)
    assert out.kind is RequestKind.SUBSCRIBE and out.subscription_changed
    (resp,) = state.update(full(eds={"b": b"EB"}))
    assert contents(resp) == {"b": b"EB"}


def test_eds_resource_that_disappears_and_returns_is_resent() -> None:
    state = subscribed_state()
    assert state.update(full(eds={"a": b"EA"})) == []  # EDS cannot delete; nothing to send
    (resp,) = state.update(full(eds={"a": b"EA", "b": b"EB"}))
    assert contents(resp) == {"b": b"EB"}


def test_empty_eds_subscription_is_not_wildcard() -> None:
    state = AdsStreamState()
    state.update(full())
    out = state.receive(req(ENDPOINT_TYPE), now=0)
    assert out.responses == ()
    assert not state.types[ENDPOINT_TYPE].wildcard


def test_initial_wildcard_lds_with_no_listeners_still_answers() -> None:
    state = AdsStreamState()
    state.update(full(lds={}))
    (resp,) = state.receive(req(LISTENER_TYPE), now=0).responses
    assert contents(resp) == {}


def test_nothing_is_sent_before_resources_exist() -> None:
    state = AdsStreamState()
    out = state.receive(req(CLUSTER_TYPE), now=0)
    assert out.kind is RequestKind.SUBSCRIBE and out.responses == ()
    (resp,) = state.update(full())
    assert resp.type_url == CLUSTER_TYPE


def test_first_request_with_leftover_nonce_still_subscribes() -> None:
    state = AdsStreamState()
    state.update(full())
    out = state.receive(req(CLUSTER_TYPE, nonce="17", version="old"), now=0)
    assert out.kind is RequestKind.SUBSCRIBE
    assert len(out.responses) == 1


def test_unknown_type_is_answered_with_nothing_and_flagged_once() -> None:
    state = subscribed_state()
    for url in (SECRET_TYPE, "type.googleapis.com/bogus", ""):
        first = state.receive(req(url, "x"), now=0)
        again = state.receive(req(url, "x", nonce="1"), now=0)
        assert first.kind is RequestKind.UNKNOWN_TYPE and first.first_unknown
        assert again.kind is RequestKind.UNKNOWN_TYPE and not again.first_unknown
        assert first.responses == () and again.responses == ()
    assert set(state.types) == set(ADS_ORDER)


def test_duplicate_ack_is_harmless() -> None:
    state = subscribed_state()
    ts = state.types[CLUSTER_TYPE]
    for _ in range(3):
        out = state.receive(req(CLUSTER_TYPE, nonce=ts.sent_nonce, version=ts.sent_version), 0)
        assert out.kind is RequestKind.ACK and out.responses == ()


def test_synced_sets_reports_what_the_client_has() -> None:
    state = subscribed_state()
    sets = full(cds={"a": b"new"})
    state.update(sets)
    synced = state.synced_sets()
    assert synced[CLUSTER_TYPE] is sets[CLUSTER_TYPE]
    assert set(synced) == set(ADS_ORDER)


def test_streams_sharing_sets_share_one_diff_per_push() -> None:
    before = full(eds={"a": b"EA", "b": b"EB", **{f"e{i}": b"x" for i in range(100)}})
    states = [subscribed_state(before) for _ in range(3)]
    for s in states:  # subscribe to every e* name (and ACK)
        ts = s.types[ENDPOINT_TYPE]
        names = ("a", "b", *(f"e{i}" for i in range(100)))
        (resp,) = s.receive(req(ENDPOINT_TYPE, *names, nonce=ts.sent_nonce), 0).responses
        assert len(resp.names or ()) == 100  # only the newly subscribed names
    after = dict(before)
    after[ENDPOINT_TYPE] = ResourceSet(
        ENDPOINT_TYPE, {**before[ENDPOINT_TYPE].resources, "e7": b"y"}
    )
    diffs = DiffCache()
    for s in states:
        (push,) = s.update(after, diffs)
        assert contents(push) == {"e7": b"y"}
    assert len(diffs._entries) == 1  # one comparison of the two sets for all streams


def test_composed_sets_diff_only_parts_that_changed() -> None:
    shared = rs(ENDPOINT_TYPE, a=b"EA", b=b"EB")
    own = rs(ENDPOINT_TYPE, c=b"EC")
    sets = full()
    sets[ENDPOINT_TYPE] = ResourceSet.compose(ENDPOINT_TYPE, [shared, own])
    state = AdsStreamState()
    state.update(sets)
    (first,) = state.receive(req(ENDPOINT_TYPE, "a", "b", "c"), now=0).responses
    assert contents(first) == {"a": b"EA", "b": b"EB", "c": b"EC"}

    # Only the view's own part changed: the shared part is not even compared.
    changed = dict(sets)
    changed[ENDPOINT_TYPE] = ResourceSet.compose(
        ENDPOINT_TYPE, [shared, rs(ENDPOINT_TYPE, c=b"C2")]
    )
    diffs = DiffCache()
    (push,) = state.update(changed, diffs)
    assert contents(push) == {"c": b"C2"}
    # The shared part changed while the own part stayed the same object.
    again = dict(changed)
    again[ENDPOINT_TYPE] = ResourceSet.compose(
        ENDPOINT_TYPE, [rs(ENDPOINT_TYPE, a=b"EA", b=b"B3"), changed[ENDPOINT_TYPE].parts[1]]
    )
    (push,) = state.update(again, diffs)
    assert contents(push) == {"b": b"B3"}
