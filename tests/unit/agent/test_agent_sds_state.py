"""The SDS stream state machine: subscribe, ACK, NACK (not resent), push on change."""

from __future__ import annotations

from pilotfish.agent.sds_state import SdsRequest, SdsResponse, SdsStreamState, SecretSet

V1 = SecretSet("v1", {"default": b"cert-1", "ROOTCA": b"root"})
V2 = SecretSet("v2", {"default": b"cert-2", "ROOTCA": b"root"})


def _subscribe(state: SdsStreamState, *names: str, current: SecretSet = V1) -> SdsResponse:
    response = state.receive(SdsRequest(names=names), current)
    assert response is not None
    return response


def test_first_request_gets_the_subscribed_secrets_that_exist() -> None:
    state = SdsStreamState(nonce_prefix="s-")
    response = _subscribe(state, "default", "unknown")
    assert response == SdsResponse(version="v1", nonce="s-1", names=("default",))


def test_nothing_is_sent_for_names_that_do_not_exist_yet() -> None:
    state = SdsStreamState()
    assert state.receive(SdsRequest(names=("default",)), SecretSet("", {})) is None
    # Once it exists, the update goes out.
    assert state.update(V1) == SdsResponse("v1", "1", ("default",))


def test_ack_is_recorded_and_answers_nothing() -> None:
    state = SdsStreamState()
    sent = _subscribe(state, "default", "ROOTCA")
    ack = SdsRequest(names=("default", "ROOTCA"), version_info="v1", nonce=sent.nonce)
    assert state.receive(ack, V1) is None
    assert state.acked_version == "v1"
    assert state.acked_names == frozenset({"default", "ROOTCA"})
    assert state.last_nack is None


def test_nack_is_recorded_and_not_resent() -> None:
    state = SdsStreamState()
    sent = _subscribe(state, "default")
    nack = SdsRequest(names=("default",), version_info="", nonce=sent.nonce, error_detail="bad key")
    assert state.receive(nack, V1) is None
    assert state.last_nack == "bad key"
    assert state.acked_version == ""
    assert state.acked_names == frozenset()
    # Nor on a spurious update with the same content.
    assert state.update(V1) is None
    # A real change is sent, and its ACK clears the NACK.
    pushed = state.update(V2)
    assert pushed is not None and pushed.version == "v2"
    ack = SdsRequest(names=("default",), version_info="v2", nonce=pushed.nonce)
    assert state.receive(ack, V2) is None
    assert state.last_nack is None and state.acked_version == "v2"


def test_rotation_pushes_only_to_streams_whose_secret_changed() -> None:
    cert_stream, root_stream = SdsStreamState(), SdsStreamState()
    _subscribe(cert_stream, "default")
    _subscribe(root_stream, "ROOTCA")
    pushed = cert_stream.update(V2)
    assert pushed == SdsResponse("v2", "2", ("default",))
    assert root_stream.update(V2) is None  # the root did not change


def test_stale_nonce_is_ignored() -> None:
    state = SdsStreamState()
    first = _subscribe(state, "default")
    second = state.update(V2)
    assert second is not None
    stale_nack = SdsRequest(names=("default",), nonce=first.nonce, error_detail="old")
    assert state.receive(stale_nack, V2) is None
    assert state.last_nack is None
    stale_ack = SdsRequest(names=("default",), version_info="v1", nonce=first.nonce)
    assert state.receive(stale_ack, V2) is None
    assert state.acked_version == ""


def test_subscribing_to_more_names_sends_them() -> None:
    state = SdsStreamState()
    first = _subscribe(state, "default")
    more = SdsRequest(names=("default", "ROOTCA"), version_info="v1", nonce=first.nonce)
    response = state.receive(more, V1)
    assert response is not None and response.names == ("ROOTCA", "default")
    assert state.acked_names == frozenset({"default"})


def test_echoing_the_nonce_with_another_version_is_not_an_ack() -> None:
    state = SdsStreamState()
    sent = _subscribe(state, "default")
    request = SdsRequest(names=("default",), version_info="", nonce=sent.nonce)
    assert state.receive(request, V1) is None
    assert state.acked_names == frozenset() and state.acked_version == ""
