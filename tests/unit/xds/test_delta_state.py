"""The delta ADS state machine without I/O: versions, diffs, ACK pairing, bounds."""

from __future__ import annotations

from ads_helpers import cla, cluster
from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.xds.server.delta_encode import DeltaResponseEncoder
from pilotfish.xds.server.delta_stream import DeltaRequest, DeltaStreamState
from pilotfish.xds.server.encode import ResponseEncoder
from pilotfish.xds.server.state import DiffCache, RequestKind, gone
from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, ResourceSet, resource_version


def clusters(*names: str, timeout: int = 1) -> ResourceSet:
    return ResourceSet(CLUSTER_TYPE, {n: cluster(n, timeout) for n in names})


def test_versions_are_content_digests_shared_by_composed_sets() -> None:
    a, b = clusters("a"), clusters("b", "c")
    both = ResourceSet.compose(CLUSTER_TYPE, [a, b])
    assert both.version_of("c") == resource_version(b.resources["c"])
    assert dict(both.versions()) == {**a.versions(), **b.versions()}
    assert a.versions() is a.versions()  # computed once per set object
    assert clusters("a").versions() == a.versions()  # equal bytes, equal versions


def test_gone_skips_parts_kept_in_both() -> None:
    kept, old_part = clusters("a"), clusters("b", "c")
    old = ResourceSet.compose(CLUSTER_TYPE, [kept, old_part])
    new = ResourceSet.compose(CLUSTER_TYPE, [kept, clusters("c")])
    assert gone(old, new) == {"b"}
    diffs = DiffCache()
    assert diffs.removed(old, new) == {"b"} and diffs.removed(old, new) is diffs.removed(old, new)
    assert diffs.removed(new, new) == frozenset()


def test_ack_pairs_by_nonce_and_unknown_nonces_are_stale() -> None:
    state = DeltaStreamState([CLUSTER_TYPE, ENDPOINT_TYPE])
    state.update({CLUSTER_TYPE: clusters("a"), ENDPOINT_TYPE: ResourceSet(ENDPOINT_TYPE, {})})
    first = state.receive(DeltaRequest(CLUSTER_TYPE), now=1.0)
    (resp,) = first.responses
    state.update({CLUSTER_TYPE: clusters("a", "b")})
    stale = state.receive(DeltaRequest(CLUSTER_TYPE, response_nonce="nope"), now=2.0)
    assert stale.kind is RequestKind.STALE
    ack = state.receive(DeltaRequest(CLUSTER_TYPE, response_nonce=resp.nonce), now=3.0)
    assert ack.kind is RequestKind.ACK
    ts = state.types[CLUSTER_TYPE]
    assert ts.acked_version == resp.version != ts.sent_version  # the second is in flight
    again = state.receive(DeltaRequest(CLUSTER_TYPE, response_nonce=resp.nonce), now=4.0)
    assert again.kind is RequestKind.STALE  # answered already


def test_unanswered_responses_are_bounded() -> None:
    state = DeltaStreamState([CLUSTER_TYPE])
    state.update({CLUSTER_TYPE: clusters("a")})
    (first,) = state.receive(DeltaRequest(CLUSTER_TYPE), now=0).responses
    for i in range(100):
        state.update({CLUSTER_TYPE: clusters("a", timeout=i + 2)})
    late = state.receive(DeltaRequest(CLUSTER_TYPE, response_nonce=first.nonce), now=1)
    assert late.kind is RequestKind.STALE  # forgotten, not kept forever


def test_encoding_is_a_valid_delta_response_sharing_the_sotw_cache_shape() -> None:
    state = DeltaStreamState([CLUSTER_TYPE])
    cur = clusters("a", "b")
    state.update({CLUSTER_TYPE: cur})
    (whole,) = state.receive(DeltaRequest(CLUSTER_TYPE), now=0).responses
    state.update({CLUSTER_TYPE: clusters("a")})
    encoder = DeltaResponseEncoder()
    assert isinstance(encoder, ResponseEncoder)
    frame = encoder.encode(whole)
    parsed = discovery_pb2.DeltaDiscoveryResponse.FromString(frame)
    assert parsed.type_url == CLUSTER_TYPE and parsed.nonce == whole.nonce
    assert parsed.system_version_info == cur.version
    assert [(r.name, r.version) for r in parsed.resources] == [
        (n, cur.version_of(n)) for n in ("a", "b")
    ]
    assert parsed.resources[0].resource.SerializeToString() == cur.resources["a"]
    # A whole set's frame is built once (body and frame) and then handed out as is.
    assert encoder.encode(whole) is frame
    assert (encoder.misses, encoder.frame_hits) == (1, 1)


def test_streams_given_the_same_response_share_its_nonce_and_frame() -> None:
    cur = clusters("a", "b", "c", "d")
    changed = ResourceSet(
        CLUSTER_TYPE, {"a": cluster("a", 1), **{n: cluster(n, 9) for n in ("b", "c", "d")}}
    )
    encoder = DeltaResponseEncoder()
    wholes, partials = [], []
    for _ in range(3):
        state = DeltaStreamState([CLUSTER_TYPE])
        state.update({CLUSTER_TYPE: cur})
        (whole,) = state.receive(DeltaRequest(CLUSTER_TYPE), now=0).responses
        (partial,) = state.update({CLUSTER_TYPE: changed})
        assert partial.names == ("b", "c", "d")
        wholes.append((whole.nonce, encoder.encode(whole)))
        partials.append((partial.nonce, encoder.encode(partial)))
    assert len({n for n, _ in wholes}) == 1 and len({n for n, _ in partials}) == 1
    assert wholes[0][0] != partials[0][0]  # one stream's two responses stay apart
    assert wholes[0][1] is wholes[1][1] is wholes[2][1]
    assert partials[0][1] is partials[1][1] is partials[2][1]
    parsed = discovery_pb2.DeltaDiscoveryResponse.FromString(partials[0][1])
    assert [r.name for r in parsed.resources] == ["b", "c", "d"]
    assert parsed.nonce == partials[0][0]
    # Each response is answered by its own nonce on each stream.
    outcome = state.receive(DeltaRequest(CLUSTER_TYPE, response_nonce=wholes[0][0]), now=1)
    assert outcome.kind is RequestKind.ACK
    assert state.types[CLUSTER_TYPE].acked_version == cur.version
    outcome = state.receive(DeltaRequest(CLUSTER_TYPE, response_nonce=partials[0][0]), now=1)
    assert outcome.kind is RequestKind.ACK
    assert state.types[CLUSTER_TYPE].acked_version == changed.version


def test_frame_cache_stays_within_its_byte_budget() -> None:
    encoder = DeltaResponseEncoder(frame_budget=3000)
    for i in range(20):
        state = DeltaStreamState([CLUSTER_TYPE])
        state.update({CLUSTER_TYPE: clusters("a", "b", timeout=i + 1)})
        (whole,) = state.receive(DeltaRequest(CLUSTER_TYPE), now=0).responses
        encoder.encode(whole)
    assert 0 < encoder._frame_bytes <= 3000


def test_removal_only_response() -> None:
    state = DeltaStreamState([CLUSTER_TYPE, ENDPOINT_TYPE])
    eds = ResourceSet(ENDPOINT_TYPE, {"a": cla("a"), "b": cla("b")})
    state.update({CLUSTER_TYPE: clusters("a", "b"), ENDPOINT_TYPE: eds})
    state.receive(DeltaRequest(CLUSTER_TYPE), now=0)
    state.receive(DeltaRequest(ENDPOINT_TYPE, subscribe=("a", "b")), now=0)
    out = state.update(
        {CLUSTER_TYPE: clusters("a"), ENDPOINT_TYPE: ResourceSet(ENDPOINT_TYPE, {"a": cla("a")})}
    )
    assert [(r.type_url, r.names, r.removed) for r in out] == [
        (CLUSTER_TYPE, (), ("b",)),
        (ENDPOINT_TYPE, (), ("b",)),
    ]
    encoded = DeltaResponseEncoder().encode(out[0])
    parsed = discovery_pb2.DeltaDiscoveryResponse.FromString(encoded)
    assert not parsed.resources and list(parsed.removed_resources) == ["b"]


def test_present_names_of_a_composed_set_are_kept_for_the_next_stream() -> None:
    both = ResourceSet.compose(CLUSTER_TYPE, [clusters("a"), clusters("b", "c")])
    names = frozenset({"a", "c", "zz"})
    assert both.present(names) == {"a", "c"}
    assert both.present(names) is both.present(names)  # the same subscription object
    assert both.present(frozenset({"b"})) == {"b"}  # another question, answered anew
    assert ResourceSet(CLUSTER_TYPE, {}).present(names) == frozenset()


def test_one_push_plans_a_response_once_for_streams_at_the_same_point() -> None:
    eds = ResourceSet(ENDPOINT_TYPE, {n: cla(n) for n in ("a", "b", "c")})
    moved = ResourceSet(ENDPOINT_TYPE, {**eds.resources, "b": cla("b", address="10.0.0.9")})
    name_sets: dict[frozenset[str], frozenset[str]] = {}

    def subscribed(*names: str) -> DeltaStreamState:
        state = DeltaStreamState([ENDPOINT_TYPE], name_sets=name_sets)
        state.update({ENDPOINT_TYPE: eds})
        state.receive(DeltaRequest(ENDPOINT_TYPE, subscribe=names), now=0)
        return state

    same = [subscribed("a", "b"), subscribed("b", "a")]
    other = subscribed("b", "c")
    behind = subscribed("a", "b")
    diffs = DiffCache()
    # ``behind`` missed an earlier change of ``a``: it is synced to another set.
    behind.update({ENDPOINT_TYPE: ResourceSet(ENDPOINT_TYPE, {**eds.resources})})
    (first,), (second,) = (s.update({ENDPOINT_TYPE: moved}, diffs) for s in same)
    assert first is second and first.names == ("b",) and first.shared
    (own,) = other.update({ENDPOINT_TYPE: moved}, diffs)
    assert own is not first and own.names == ("b",) and own.nonce == first.nonce
    (late,) = behind.update({ENDPOINT_TYPE: moved}, diffs)
    assert late is not first and late.names == ("b",)
    for state in (*same, other):
        ack = state.receive(DeltaRequest(ENDPOINT_TYPE, response_nonce=first.nonce), now=1)
        assert ack.kind is RequestKind.ACK
        assert state.types[ENDPOINT_TYPE].acked_version == moved.version
    # Nothing more for anyone: the shared plan moved each stream to the new set.
    assert all(s.update({ENDPOINT_TYPE: moved}, DiffCache()) == [] for s in (*same, other))


def test_subscribing_every_load_assignment_gets_the_whole_set_and_one_interned_name_set() -> None:
    eds = ResourceSet(ENDPOINT_TYPE, {n: cla(n) for n in ("c", "a", "b")})
    name_sets: dict[frozenset[str], frozenset[str]] = {}
    request = DeltaRequest(ENDPOINT_TYPE, subscribe=("c", "a", "b"))  # one request, as read
    held = []
    for _ in range(2):
        state = DeltaStreamState([ENDPOINT_TYPE], name_sets=name_sets)
        state.update({ENDPOINT_TYPE: eds})
        (response,) = state.receive(request, now=0).responses
        # Every name: the whole set (shared encoding), not a sorted list of them all.
        assert response.names is None and response.resource_count == 3
        held.append(state.types[ENDPOINT_TYPE].names)
    assert held[0] is held[1] is request.subscribe_set
    # Fewer than all: the names, sorted, so equal responses are equal on every stream.
    state = DeltaStreamState([ENDPOINT_TYPE], name_sets=name_sets)
    state.update({ENDPOINT_TYPE: eds})
    (some,) = state.receive(DeltaRequest(ENDPOINT_TYPE, subscribe=("c", "a")), now=0).responses
    assert some.names == ("a", "c")
    # "*" is never held as a name.
    state = DeltaStreamState([ENDPOINT_TYPE], name_sets=name_sets)
    state.update({ENDPOINT_TYPE: eds})
    state.receive(DeltaRequest(ENDPOINT_TYPE, subscribe=("a", "*")), now=0)
    assert state.types[ENDPOINT_TYPE].names == {"a"}
