"""The control plane's HTTP API: readiness, metrics and debug endpoints.

- ``GET /ready``: 200 once configuration is loaded and xDS is serving.
- ``GET /metrics``: Prometheus text format.
- ``GET /debug/syncz``: per proxy and xDS type, sent/ACKed versions and NACKs.
- ``GET /debug/pushz``: has the last change reached every proxy? The store's
  revision, the built snapshot's, whether a push is pending, and how many
  proxies have not ACKed all they were sent: ``converged`` when the snapshot
  is the store's, nothing is pending and every proxy ACKed (a client that
  wrote configuration polls it instead of guessing with sleeps).
- ``GET /debug/configz``: loaded resources, files, and current errors/warnings.
- ``GET /debug/config_dump?proxy=<id>``: the resources last sent to that proxy.
- ``GET /debug/meshconfig``: the mesh config in force (Istio's field names).
- ``GET|POST /debug/explain``: how a connected proxy handles a request
  (``explain_api``).
- ``/api/v1/...`` and ``/apis/<group>/<version>/...``: the configuration API
  (Kubernetes-style REST; see ``config_api``).

Everything but ``/ready`` and ``/metrics``, including routes added to ``app``
later, requires ``Authorization: Bearer <token>`` (``auth.token_middleware``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web
from google.protobuf import any_pb2, json_format
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pilotfish.api.validation.references import check_references
from pilotfish.controlplane.api_token import ApiToken
from pilotfish.controlplane.auth import token_middleware
from pilotfish.controlplane.config_api import add_config_api
from pilotfish.controlplane.explain_api import add_explain_api
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.ir.dump import redact
from pilotfish.store import Store
from pilotfish.xds.server import XdsServer
from pilotfish.xds.types import TYPE_SHORT_NAMES

__all__ = ["ControlPlaneView", "HttpApi", "decode_resource"]


class ControlPlaneView(Protocol):
    """What the HTTP API reads of the control plane (so it never imports the runner)."""

    @property
    def settings(self) -> ControlPlaneSettings: ...
    @property
    def store(self) -> Store: ...
    @property
    def registry(self) -> CollectorRegistry: ...
    @property
    def generator(self) -> MeshGenerator: ...
    @property
    def xds(self) -> XdsServer: ...
    @property
    def ready(self) -> bool: ...
    def notify_errors_changed(self) -> None: ...


def decode_resource(data: bytes) -> dict[str, Any]:
    """A serialized ``Any`` as JSON-ready data (with its ``@type``); private keys
    (the SDS secrets of ``credentialName`` certificates) are redacted."""
    msg = any_pb2.Any.FromString(data)
    out: dict[str, Any] = redact(json_format.MessageToDict(msg, preserving_proto_field_name=True))
    return out


class HttpApi:
    def __init__(self, cp: ControlPlaneView, token: Callable[[], ApiToken | None]) -> None:
        self._cp = cp
        self._runner: web.AppRunner | None = None
        # On the whole app, so routes added later (the runtime's) are covered too.
        app = web.Application(middlewares=[token_middleware(token)])
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/debug/syncz", self._syncz)
        app.router.add_get("/debug/pushz", self._pushz)
        app.router.add_get("/debug/configz", self._configz)
        app.router.add_get("/debug/config_dump", self._config_dump)
        app.router.add_get("/debug/meshconfig", self._meshconfig)
        add_explain_api(app, lambda: cp.generator.snapshot, lambda: cp.xds)
        add_config_api(app, cp)
        self.app = app

    async def start(self, host: str, port: int, extra_hosts: tuple[str, ...] = ()) -> int:
        """Listen on ``host:port`` and on the same port of each of ``extra_hosts``."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        bound = int(sockets[0].getsockname()[1]) if sockets else port
        for extra in extra_hosts:
            await web.TCPSite(self._runner, extra, bound).start()
        return bound

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _ready(self, request: web.Request) -> web.Response:
        if self._cp.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="starting\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        self._cp.notify_errors_changed()
        body = generate_latest(self._cp.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _syncz(self, request: web.Request) -> web.Response:
        return web.json_response([s.to_json() for s in self._cp.xds.status()])

    async def _pushz(self, request: web.Request) -> web.Response:
        # One event-loop turn reads all of it, so the fields agree with each other.
        store = self._cp.store.revision
        snapshot = self._cp.generator.snapshot.revision
        pending = self._cp.xds.push_pending
        behind = self._cp.xds.proxies_behind()
        return web.json_response(
            {
                "store_revision": store,
                "snapshot_revision": snapshot,
                "push_pending": pending,
                "proxies_behind": behind,
                "converged": store == snapshot and not pending and not behind,
            }
        )

    async def _configz(self, request: web.Request) -> web.Response:
        snapshot = self._cp.generator.snapshot
        store = self._cp.store
        diags = list(store.diagnostics())
        diags += check_references(list(snapshot.resources), snapshot.domain_suffix)
        files_status = getattr(store, "files_status", None)
        return web.json_response(
            {
                "revision": snapshot.revision,
                "resources": [
                    {
                        "kind": r.kind,
                        "namespace": r.namespace,
                        "name": r.name,
                        "file": r.source.file if r.source else "",
                        "line": r.source.line if r.source else 0,
                    }
                    for r in snapshot.resources
                ],
                "errors": [d.to_json() for d in diags if d.is_error],
                "warnings": [d.to_json() for d in diags if not d.is_error],
                "files": files_status() if callable(files_status) else [],
            }
        )

    async def _meshconfig(self, request: web.Request) -> web.Response:
        return web.json_response(self._cp.settings.mesh.to_json())

    async def _config_dump(self, request: web.Request) -> web.Response:
        proxy = request.query.get("proxy", "")
        if not proxy:
            return web.json_response({"error": "query parameter 'proxy' is required"}, status=400)
        sent = self._cp.xds.sent(proxy)
        if sent is None:
            return web.json_response({"error": f"proxy {proxy!r} is not connected"}, status=404)
        types: dict[str, Any] = {}
        for type_url, rs in sent.items():
            types[TYPE_SHORT_NAMES.get(type_url, type_url)] = {
                "type_url": type_url,
                "version": rs.version,
                "resources": [decode_resource(rs.resources[n]) for n in sorted(rs.resources)],
            }
        return web.json_response({"proxy": proxy, "types": types})
