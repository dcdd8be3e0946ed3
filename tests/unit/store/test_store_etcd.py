"""EtcdStore against a real etcd: layout, revisions, watching, atomic batches,
compaction and restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from store_testing import (
    DEADLINE,
    DESTINATION_RULE_REVIEWS,
    SERVICE_REVIEWS,
    resource,
    virtual_service,
)

from etcdkit import EtcdServer, Relay, ServerTls, all_threads_stopped, etcd_missing
from pilotfish.api.diagnostics import Diagnostic, Severity
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.runtime.ports import free_port
from pilotfish.store import StoreConflict, StoreError
from pilotfish.store.etcd import EtcdStore
from pilotfish.store.etcd_client import EtcdClient, EtcdError, EtcdTls, b64, parse_endpoints, unb64
from pki import TestCa
from polling import apoll

VS_KEY = ResourceKey("VirtualService", "default", "reviews")
VS_ETCD_KEY = "/registry/networking.istio.io/virtualservices/default/reviews"


def new_store(address: str, **kwargs: object) -> EtcdStore:
    return EtcdStore(EtcdClient(parse_endpoints(f"etcd://{address}")), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def stores(etcd_server: EtcdServer) -> AsyncIterator[list[EtcdStore]]:
    """Two started stores on one etcd, as two control-plane replicas."""
    made = [new_store(etcd_server.address), new_store(etcd_server.address)]
    try:
        for store in made:
            await store.start()
        yield made
    finally:
        for store in made:
            await store.close()


def etcd_keys(server: EtcdServer) -> dict[str, dict[str, object]]:
    reply = server.call("/v3/kv/range", {"key": b64("/registry/"), "range_end": b64("/registry0")})
    kvs = reply.get("kvs", [])
    assert isinstance(kvs, list)
    return {unb64(kv["key"]).decode(): kv for kv in kvs}


async def test_apply_get_list_delete_with_kubernetes_key_layout(
    stores: list[EtcdStore], etcd_server: EtcdServer
) -> None:
    store = stores[0]
    store.apply(resource(virtual_service(subset="v1")))
    store.apply(resource(SERVICE_REVIEWS))
    served = store.get(VS_KEY)
    assert served is not None and served.spec.http[0].route[0].destination.subset == "v1"
    assert [r.kind for r in store.list()] == ["Service", "VirtualService"]
    assert [r.name for r in store.list(kind="Service", namespace="default")] == ["reviews"]

    keys = etcd_keys(etcd_server)
    assert sorted(keys) == [VS_ETCD_KEY, "/registry/services/default/reviews"]
    document = json.loads(unb64(str(keys[VS_ETCD_KEY]["value"])))
    assert document["apiVersion"] == "networking.istio.io/v1"
    assert document["kind"] == "VirtualService"
    assert document["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v1"

    store.delete(VS_KEY)
    assert store.get(VS_KEY) is None
    assert sorted(etcd_keys(etcd_server)) == ["/registry/services/default/reviews"]
    with pytest.raises(KeyError):
        store.delete(VS_KEY)


async def test_revision_is_etcds_and_only_grows(
    stores: list[EtcdStore], etcd_server: EtcdServer
) -> None:
    store = stores[0]
    first = store.apply(resource(virtual_service(subset="v1")))
    assert first == int(etcd_keys(etcd_server)[VS_ETCD_KEY]["mod_revision"])  # type: ignore[call-overload]
    second = store.apply(resource(virtual_service(subset="v2")))
    assert second > first
    # The same content again writes nothing and keeps the revision.
    assert store.apply(resource(virtual_service(subset="v2"))) == second
    assert store.delete(VS_KEY) > second


async def test_a_write_on_one_replica_wakes_the_other(stores: list[EtcdStore]) -> None:
    writer, reader = stores
    before = reader.revision
    waiting = asyncio.ensure_future(reader.wait_for_change(before))
    revision = writer.apply(resource(virtual_service(subset="v2")))
    assert await asyncio.wait_for(waiting, DEADLINE) == revision
    served = reader.get(VS_KEY)
    assert served is not None and served.spec.http[0].route[0].destination.subset == "v2"
    # Deletes reach it too.
    writer.delete(VS_KEY)
    await apoll(lambda: reader.get(VS_KEY) is None, "the delete to reach the reader", DEADLINE)


async def test_a_batch_is_one_transaction_at_one_revision(
    stores: list[EtcdStore], etcd_server: EtcdServer
) -> None:
    store = stores[0]
    batch = [resource(t) for t in (virtual_service(), DESTINATION_RULE_REVIEWS, SERVICE_REVIEWS)]
    revision = store.apply_all(batch)
    mods = {kv["mod_revision"] for kv in etcd_keys(etcd_server).values()}
    assert mods == {str(revision)}
    await apoll(lambda: len(stores[1].list()) == 3, "the batch on the other replica", DEADLINE)
    assert stores[1].revision == revision


def refuse_names(*names: str):  # type: ignore[no-untyped-def]
    def validator(r: Resource) -> Iterable[Diagnostic]:
        if r.name in names:
            return [Diagnostic(Severity.ERROR, f"{r.name} is not allowed here", kind=r.kind)]
        return []

    return validator


async def test_one_bad_object_writes_nothing_and_every_error_is_listed(
    etcd_server: EtcdServer,
) -> None:
    store = new_store(etcd_server.address, validator=refuse_names("ratings", "details"))
    await store.start()
    try:
        batch = [
            resource(virtual_service("reviews")),
            resource(virtual_service("ratings")),
            resource(virtual_service("details")),
        ]
        with pytest.raises(StoreError) as refused:
            store.apply_all(batch)
        messages = [d.message for d in refused.value.diagnostics]
        assert messages == ["ratings is not allowed here", "details is not allowed here"]
        assert "nothing was written" in str(refused.value)
        assert etcd_keys(etcd_server) == {}
        assert store.list() == [] and store.revision == 0
    finally:
        await store.close()


async def test_a_bad_value_written_by_another_tool_keeps_the_last_good_object(
    stores: list[EtcdStore], etcd_server: EtcdServer
) -> None:
    store = stores[0]
    store.apply(resource(virtual_service(subset="v1")))
    etcd_server.call("/v3/kv/put", {"key": b64(VS_ETCD_KEY), "value": b64("{not: [json")})
    await apoll(lambda: store.diagnostics(), "the broken value to be reported", DEADLINE)
    (problem,) = store.diagnostics()
    assert problem.is_error and problem.source is not None
    assert problem.source.file == f"etcd:{VS_ETCD_KEY}"
    served = store.get(VS_KEY)
    assert served is not None and served.spec.http[0].route[0].destination.subset == "v1"
    # A value naming another object than its key is refused the same way.
    other = json.dumps({**json.loads(virtual_service_json("ratings"))})
    etcd_server.call("/v3/kv/put", {"key": b64(VS_ETCD_KEY), "value": b64(other)})
    await apoll(
        lambda: any("the key names" in d.message for d in store.diagnostics()),
        "the mismatched value to be reported",
        DEADLINE,
    )
    assert store.get(ResourceKey("VirtualService", "default", "ratings")) is None


def virtual_service_json(name: str) -> str:
    r = resource(virtual_service(name))
    return json.dumps({"apiVersion": r.api_version, "kind": r.kind, **dict(r.raw)})


async def test_a_write_after_another_replicas_unseen_change_sees_both(
    etcd_server: EtcdServer,
) -> None:
    """A replica that writes before the watch brought it another replica's change
    still ends up with both (the transaction's check sends it to etcd's state)."""
    relay = Relay(etcd_server.port)
    relay.start()
    behind = new_store(f"127.0.0.1:{relay.port}")
    other = new_store(etcd_server.address)
    await behind.start()
    await other.start()
    try:
        relay.cut()  # the watch of ``behind`` stops seeing changes
        other.apply(resource(SERVICE_REVIEWS))
        relay.restore()
        # The write goes through at once (a new connection); the watch may still be down.
        behind.apply(resource(virtual_service()))
        assert {r.kind for r in behind.list()} == {"Service", "VirtualService"}
    finally:
        await behind.close()
        await other.close()
        relay.close()


async def test_a_delete_of_what_was_read_keeps_another_replicas_newer_write(
    stores: list[EtcdStore], etcd_server: EtcdServer
) -> None:
    """Auto-registration's expiry deletes what it read; when another replica has
    rewritten the key since, etcd's compare on the mod revision refuses, also
    before the watch brought the rewrite in."""
    first, second = stores
    first.apply(resource(virtual_service(subset="v1")))
    await apoll(lambda: second.get(VS_KEY), "replica two to hold the object", DEADLINE)
    read = first.get(VS_KEY)
    assert read is not None
    second.apply(resource(virtual_service(subset="v2")))
    # Nothing yielded to the event loop: replica one's watch has not run.
    assert first.get(VS_KEY) is read
    with pytest.raises(StoreConflict):
        first.delete(VS_KEY, expected=read)
    assert VS_ETCD_KEY in etcd_keys(etcd_server)

    def caught_up() -> bool:
        held = first.get(VS_KEY)
        return held is not None and held.spec.http[0].route[0].destination.subset == "v2"

    await apoll(caught_up, "replica one to hear of the rewrite", DEADLINE)
    with pytest.raises(StoreConflict):  # now refused from the mirror, before etcd is asked
        first.delete(VS_KEY, expected=read)
    first.delete(VS_KEY, expected=first.get(VS_KEY))
    assert first.get(VS_KEY) is None and VS_ETCD_KEY not in etcd_keys(etcd_server)


async def test_compaction_while_disconnected_relists_and_misses_nothing(
    etcd_server: EtcdServer,
) -> None:
    relay = Relay(etcd_server.port)
    relay.start()
    follower = new_store(f"127.0.0.1:{relay.port}")
    writer = new_store(etcd_server.address)
    await follower.start()
    await writer.start()
    try:
        writer.apply_all([resource(virtual_service()), resource(DESTINATION_RULE_REVIEWS)])
        await apoll(lambda: len(follower.list()) == 2, "the follower to have both", DEADLINE)
        relay.cut()
        await apoll(lambda: follower.diagnostics(), "the follower to notice the cut", DEADLINE)
        writer.delete(ResourceKey("DestinationRule", "default", "reviews"))
        writer.apply(resource(virtual_service(subset="v2")))
        writer.apply(resource(SERVICE_REVIEWS))
        etcd_server.call("/v3/kv/compaction", {"revision": str(writer.revision), "physical": True})
        relay.restore()

        def converged() -> bool:
            vs = follower.get(VS_KEY)
            return (
                {r.kind for r in follower.list()} == {"Service", "VirtualService"}
                and vs is not None
                and vs.spec.http[0].route[0].destination.subset == "v2"
            )

        await apoll(converged, "the follower to converge after the compaction", DEADLINE)
        assert follower.watcher.relists >= 1
        assert follower.revision == writer.revision
        await apoll(lambda: not follower.diagnostics(), "the watch problem to clear", DEADLINE)
    finally:
        await follower.close()
        await writer.close()
        relay.close()


async def test_etcd_restart_while_watching_resumes_without_losing_a_change(
    etcd_server: EtcdServer,
) -> None:
    follower = new_store(etcd_server.address)
    await follower.start()
    try:
        follower.apply(resource(virtual_service(subset="v1")))
        etcd_server.stop()
        with pytest.raises(StoreError, match=r"cannot write to etcd at etcd://127\.0\.0\.1"):
            follower.apply(resource(SERVICE_REVIEWS))
        await apoll(lambda: follower.diagnostics(), "the follower to report etcd gone", DEADLINE)
        (warning,) = follower.diagnostics()
        assert (
            warning.severity is Severity.WARNING and "serving the configuration" in warning.message
        )
        assert follower.get(VS_KEY) is not None  # the last configuration stays served

        etcd_server.start()
        # Another replica writes before the follower's watch is back.
        writer = new_store(etcd_server.address)
        await writer.start()
        try:
            writer.apply(resource(virtual_service(subset="v3")))
            writer.apply(resource(SERVICE_REVIEWS))
        finally:
            await writer.close()

        def converged() -> bool:
            vs = follower.get(VS_KEY)
            return (
                vs is not None
                and vs.spec.http[0].route[0].destination.subset == "v3"
                and follower.get(ResourceKey("Service", "default", "reviews")) is not None
            )

        await apoll(converged, "the follower to catch up after the restart", DEADLINE * 2)
        await apoll(lambda: not follower.diagnostics(), "the watch problem to clear", DEADLINE)
        assert follower.watcher.reconnects >= 1 and follower.watcher.relists == 0
    finally:
        await follower.close()


async def test_a_write_etcd_holds_unanswered_is_reported_as_of_unknown_outcome(
    etcd_server: EtcdServer,
) -> None:
    """A hung etcd (SIGSTOP) holds the request and may or may not carry it out when it
    resumes (it may notice first that the client has gone): the error must not say
    the change was refused; afterwards the batch is there whole or not at all, and
    the store serves what etcd holds."""
    import os
    import signal

    store = EtcdStore(EtcdClient(parse_endpoints(f"etcd://{etcd_server.address}"), timeout=0.5))
    await store.start()
    assert etcd_server.proc is not None
    pid = etcd_server.proc.pid
    service = ResourceKey("Service", "default", "reviews")
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            # kill() returns before every thread has stopped (etcdkit.all_threads_stopped).
            await apoll(lambda: all_threads_stopped(pid), "etcd to be stopped", DEADLINE)
            with pytest.raises(StoreError, match="may still be applied when etcd answers"):
                store.apply_all([resource(virtual_service(subset="v2")), resource(SERVICE_REVIEWS)])
        finally:
            os.kill(pid, signal.SIGCONT)
        held = await apoll(
            lambda: set(etcd_keys(etcd_server)) or {"nothing"},
            "etcd to answer again",
            DEADLINE,
            ignore=(Exception,),
        )
        batch = {VS_ETCD_KEY, "/registry/services/default/reviews"}
        assert held in ({"nothing"}, batch), held
        written = held == batch
        await apoll(
            lambda: (
                (store.get(VS_KEY) is not None, store.get(service) is not None)
                == (written, written)
            ),
            "the store to serve what etcd holds",
            DEADLINE,
        )
    finally:
        await store.close()
    # An etcd that is not listening refuses outright: nothing can have been written.
    gone = EtcdStore(EtcdClient(parse_endpoints(f"etcd://127.0.0.1:{free_port()}")))
    with pytest.raises(StoreError, match="cannot write to etcd") as refused:
        gone.apply(resource(SERVICE_REVIEWS))
    assert "may still" not in str(refused.value)
    await gone.close()


async def test_start_fails_clearly_when_etcd_cannot_be_reached() -> None:
    store = new_store(f"127.0.0.1:{free_port()}", start_timeout=0.5)
    try:
        with pytest.raises(StoreError, match="cannot load the configuration from etcd://"):
            await store.start()
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("text", "hosts", "tls"),
    [
        ("etcd://127.0.0.1:2379", (("127.0.0.1", 2379),), False),
        ("etcds://a:2379,b:2380", (("a", 2379), ("b", 2380)), True),
        ("etcd://[::1]:2379", (("::1", 2379),), False),
    ],
)
def test_endpoints_parse(text: str, hosts: tuple[tuple[str, int], ...], tls: bool) -> None:
    endpoints = parse_endpoints(text)
    assert endpoints.hosts == hosts and endpoints.tls is tls
    assert str(endpoints) == text


@pytest.mark.parametrize("text", ["http://a:2379", "etcd://a", "etcd://a:0", "etcd://:2379"])
def test_bad_endpoints_are_refused_with_the_form(text: str) -> None:
    with pytest.raises(ValueError, match="etcd"):
        parse_endpoints(text)


async def test_etcds_verifies_etcd_and_presents_the_client_certificate(tmp_path: Path) -> None:
    missing = etcd_missing()
    if missing:
        pytest.skip(missing)
    ca = TestCa("etcd test CA")
    server_leaf = ca.issue("etcd", ("localhost",), ips=("127.0.0.1",))
    client_leaf = ca.issue("pilotfish", usage=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    files = {
        "ca.pem": ca.ca_pem,
        "server.pem": server_leaf.cert_pem,
        "server-key.pem": server_leaf.key_pem,
        "client.pem": client_leaf.cert_pem,
        "client-key.pem": client_leaf.key_pem,
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    tls = ServerTls(tmp_path / "server.pem", tmp_path / "server-key.pem", tmp_path / "ca.pem")
    server = EtcdServer(tmp_path / "data", tmp_path / "etcd.log", tls)
    server.start()
    try:
        endpoints = parse_endpoints(f"etcds://{server.address}")
        good = EtcdTls(
            str(tmp_path / "ca.pem"), str(tmp_path / "client.pem"), str(tmp_path / "client-key.pem")
        )
        store = EtcdStore(EtcdClient(endpoints, good))
        await store.start()
        try:
            assert store.apply(resource(SERVICE_REVIEWS)) > 0
            assert store.get(ResourceKey("Service", "default", "reviews")) is not None
        finally:
            await store.close()
        # Without a client certificate etcd refuses us; with the system roots we refuse etcd.
        for refused in (EtcdTls(str(tmp_path / "ca.pem")), None):
            client = EtcdClient(endpoints, refused)
            try:
                with pytest.raises(EtcdError, match="cannot reach etcd"):
                    client.call("/v3/kv/range", {"key": b64("/registry/")})
            finally:
                await client.close()
        with pytest.raises(ValueError, match="etcds://"):
            EtcdClient(parse_endpoints(f"etcd://{server.address}"), good)
    finally:
        server.stop()
