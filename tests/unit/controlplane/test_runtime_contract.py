"""The control plane's public hooks for an embedding runtime (``pilotfish up``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.model.snapshot import Snapshot
from pilotfish.store import MemoryStore


async def _pods(request: web.Request) -> web.Response:
    return web.json_response({"pods": []})


async def test_routes_only_before_start_and_listeners_see_snapshots() -> None:
    cp = ControlPlane(ControlPlaneSettings(xds_port=0, http_port=0), store=MemoryStore())
    seen: list[Snapshot] = []
    cp.add_snapshot_listener(seen.append)
    cp.add_route("GET", "/runtime/pods", _pods)
    await cp.start()
    try:
        assert seen == [cp.snapshot]
        with pytest.raises(RuntimeError, match="started"):
            cp.add_route("GET", "/late", _pods)
        # Without a CA, identity hooks are no-ops.
        assert not cp.has_ca
        assert cp.register_workload_token("default", "web", "web-0") is None
        assert cp.retain_workload_tokens(()) == 0
        assert cp.issued_identities() == []
    finally:
        await cp.close()


async def test_workload_tokens_through_the_contract(tmp_path: Path) -> None:
    settings = ControlPlaneSettings(
        xds_port=0, http_port=0, secure_port=0, xds_mtls_port=0, ca_dir=str(tmp_path / "ca")
    )
    cp = ControlPlane(settings, store=MemoryStore())
    await cp.start()
    try:
        assert cp.has_ca and cp.ca is not None
        web0 = cp.register_workload_token("default", "web", "web-0")
        web1 = cp.register_workload_token("default", "web", "web-1")
        assert web0 and web1
        owner = cp.ca.tokens.lookup(web0)
        assert owner is not None and owner.pod == "web-0"
        assert cp.retain_workload_tokens({"web-1"}) == 1
        assert cp.ca.tokens.lookup(web0) is None
        cp.forget_workload("web-1")
        assert cp.ca.tokens.lookup(web1) is None
    finally:
        await cp.close()
