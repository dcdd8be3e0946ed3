"""The control plane: store -> snapshot -> generator -> xDS server, plus the HTTP API.

Theory of operation: ``ControlPlane.start()`` loads the configuration once,
builds the first snapshot, then starts the xDS server and the HTTP API, and a
watcher task that waits for store revisions. Each new revision becomes a new
immutable snapshot handed to the generator (which drops only the caches the
change invalidates) and a ``notify_change()`` to the xDS server, whose
debouncer coalesces bursts of edits into one push. An isolated revision is
built at once; under a burst the builds are paced (``BuildPacer``): not while
a push waits or runs, which would send only the newest snapshot anyway, and
no sooner after a build than that build took. A broken file never reaches the
snapshot: the store keeps serving that file's last good objects and reports
the error, which ``/debug/configz`` and ``/metrics`` show.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pilotfish.api.diagnostics import Severity
from pilotfish.ca import (
    CONTROL_PLANE_DNS_NAME,
    JOIN_TOKEN_STORE_FILE,
    CertificateAuthority,
    JoinTokens,
    MeshCa,
    TokenRegistry,
)
from pilotfish.ca.port import CaPort
from pilotfish.ca.records import IssuedRecord
from pilotfish.controlplane.api_token import ApiToken, load_or_create_token_file
from pilotfish.controlplane.auto_registration import AutoRegistration
from pilotfish.controlplane.config_store import build_store, uses_etcd
from pilotfish.controlplane.gc_pacing import GcPacer
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.controlplane.http_api import HttpApi
from pilotfish.controlplane.join_token_api import add_join_token_api
from pilotfish.controlplane.jwks import JwksFetcher
from pilotfish.controlplane.leadership import Leadership
from pilotfish.controlplane.node_config_api import add_node_config_api
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.controlplane.shared_jwks import SharedJwks
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.store import Store
from pilotfish.translate.security.jwt import jwks_uris
from pilotfish.xds.debounce import BuildPacer, MonotonicClock
from pilotfish.xds.server import TlsServerConfig, XdsServer
from pilotfish.xds.server.tls import server_tls_credentials

__all__ = ["ControlPlane", "RouteHandler", "SnapshotListener"]

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SnapshotListener = Callable[[Snapshot], None]

log = logging.getLogger("pilotfish.controlplane")


class ControlPlane:
    """Wires store, snapshot, translation, xDS and HTTP together. No work at construction."""

    def __init__(self, settings: ControlPlaneSettings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store if store is not None else build_store(settings)
        self.registry = CollectorRegistry()
        self.generator = MeshGenerator()
        # JWKS of RequestAuthentication jwksUris, fetched here and put in the snapshot.
        self.jwks: JwksFetcher | SharedJwks = JwksFetcher(self._jwks_changed)
        # With etcd, replicas elect a leader for the singleton jobs (JWKS fetching).
        self.leadership: Leadership | None = None
        if uses_etcd(settings):
            self.leadership = Leadership(settings, self.registry, settings.leader_ttl_seconds)
            self.jwks = SharedJwks(self.leadership, self._jwks_changed)
        self._jwks_live = False
        self.xds = XdsServer(
            self.generator,
            quiet_period=settings.quiet_period,
            max_delay=settings.max_delay,
            registry=self.registry,
            plaintext_secrets=settings.plaintext_secrets,
        )
        # Joined proxies' WorkloadEntries (told of every xDS stream; named once started).
        self.auto_registration = AutoRegistration(
            lambda: self.store, "", grace=settings.workload_entry_grace_seconds
        )
        self.xds.connection_listener = self.auto_registration
        self._api_token: ApiToken | None = None
        self.http = HttpApi(self, lambda: self._api_token)
        if self.leadership is not None:
            self.http.app.router.add_get("/debug/leader", self.leadership.handle_debug)
        add_join_token_api(self.http.app, lambda: self.ca, lambda: self.store)
        add_node_config_api(self.http.app, self)
        self.xds_port = 0
        self.http_port = 0
        # The mesh CA, its TLS port (``secure_port``) and the xDS mTLS port, when
        # ``settings.ca_dir`` is set (after start()).
        self.ca: MeshCa | None = None
        self._ca_port: CaPort | None = None
        self.secure_port = 0
        self.xds_mtls_port = 0
        self.ready = False
        self._watcher: asyncio.Task[None] | None = None
        # Standalone only (``freeze_gc``): collects and freezes after pushes.
        self.gc_pacer: GcPacer | None = None
        self._gc_pacing: asyncio.Task[None] | None = None
        # Called with each new snapshot (the local runtime updates pod DNS names).
        self._snapshot_listeners: list[SnapshotListener] = []
        self._started = False
        # Configuration errors already logged (formatted), so each is logged once.
        self._logged_errors: set[str] = set()
        self._config_errors = Gauge(
            "pilotfish_config_errors",
            "Configuration errors currently reported (files not applied)",
            registry=self.registry,
        )
        self._config_warnings = Gauge(
            "pilotfish_config_warnings",
            "Configuration warnings currently reported",
            registry=self.registry,
        )
        self._revision = Gauge(
            "pilotfish_config_revision",
            "Store revision of the current snapshot",
            registry=self.registry,
        )
        self._resources = Gauge(
            "pilotfish_config_resources",
            "Configuration objects in the current snapshot",
            registry=self.registry,
        )
        # Paces snapshot builds under a burst of revisions (see ``BuildPacer``).
        self._pacer_clock = MonotonicClock()
        self._pacer = BuildPacer(self._pacer_clock, max_wait=settings.max_delay)
        self._snapshots = Counter("pilotfish_snapshots", "Snapshots built", registry=self.registry)
        self._snapshot_seconds = Histogram(
            "pilotfish_snapshot_build_seconds",
            "Time to build a snapshot from the store",
            registry=self.registry,
        )

    @property
    def api_token(self) -> ApiToken:
        """The bearer token the HTTP API requires (known once ``start()`` began)."""
        if self._api_token is None:
            raise RuntimeError("the control plane has not started: it has no API token yet")
        return self._api_token

    def _load_api_token(self) -> ApiToken:
        """Raises ``ApiTokenError`` for an unusable token or token file."""
        settings = self.settings
        if settings.api_token:
            return ApiToken(settings.api_token)
        if settings.api_token_file:
            path = Path(settings.api_token_file)
            token, created = load_or_create_token_file(path)
            log.info("HTTP API token %s %s", "created in" if created else "read from", path)
            return token
        return ApiToken.generate()

    # -- the runtime's contract ------------------------------------------------------
    # What an embedding runtime (``pilotfish up``) uses of a control plane, besides
    # ``store``, the ports and ``api_token``. Everything else is internal.

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot in force."""
        return self.generator.snapshot

    @property
    def has_ca(self) -> bool:
        """Whether the mesh CA runs (``settings.ca_dir`` set; known once started)."""
        return self.ca is not None

    def add_route(self, method: str, path: str, handler: RouteHandler) -> None:
        """Serve ``handler`` on the HTTP API (token required, like every debug route).

        Only before ``start()``: aiohttp freezes its router when it starts serving.
        """
        if self._started:
            raise RuntimeError(f"cannot add route {method} {path}: the control plane started")
        self.http.app.router.add_route(method, path, handler)

    def add_snapshot_listener(self, listener: SnapshotListener) -> None:
        """Call ``listener`` with every new snapshot (a failing listener is logged)."""
        self._snapshot_listeners.append(listener)

    def register_workload_token(
        self, namespace: str, service_account: str, owner: str
    ) -> str | None:
        """A fresh one-time CA credential for ``owner``'s identity (None: no CA).

        Replaces any earlier token of ``owner``; persisted when the CA has a token store.
        """
        if self.ca is None:
            return None
        return self.ca.tokens.register(namespace, service_account, owner)

    def retain_workload_tokens(self, owners: Iterable[str]) -> int:
        """Revoke the CA tokens of every owner not in ``owners``; returns how many."""
        return self.ca.tokens.retain_pods(owners) if self.ca is not None else 0

    def forget_workload(self, owner: str) -> None:
        """``owner`` is gone: revoke its tokens and drop its certificate record."""
        if self.ca is not None:
            self.ca.forget_pod(owner)

    def issued_identities(self) -> list[IssuedRecord]:
        """The newest certificate the CA issued per owner (empty without a CA)."""
        return self.ca.issued() if self.ca is not None else []

    def record_issued(self, record: IssuedRecord) -> None:
        """Remember a certificate an earlier CA issued (adopted proxies still hold it)."""
        if self.ca is not None:
            self.ca.records.add(record)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._started = True
        # First, so that an unusable token file fails the start before anything runs.
        self._api_token = self._load_api_token()
        await self.store.start()
        if self.leadership is not None:
            await self.leadership.start()
        # Give the JWKS a first chance so proxies do not start out rejecting tokens.
        self.jwks.want(jwks_uris(tuple(self.store.list())))
        await self.jwks.wait_attempted(timeout=5.0)
        self._rebuild()
        self.store.add_diagnostics_listener(self._report_diagnostics)
        self._jwks_live = True
        if self.settings.freeze_gc:
            # The loaded configuration lives as long as the process: move it out of
            # the cyclic collector's sight so full collections stay short during pushes.
            gc.collect()
            gc.freeze()
            self.gc_pacer = GcPacer(lambda: self.xds.activity, lambda: self.xds.busy)
            self._gc_pacing = asyncio.create_task(self.gc_pacer.run(), name="pilotfish-gc-pacer")
        tls = self._start_ca()
        self.xds_port = await self.xds.start(
            self.settings.bind,
            self.settings.xds_port if self.settings.plaintext_xds else None,
            self.settings.extra_xds_binds,
            tls_port=self.settings.xds_mtls_port,
            tls=tls,
        )
        self.xds_mtls_port = self.xds.tls_port
        if tls is not None:
            await self._start_ca_port(tls)
        # Stable across restarts and distinct per replica: its host and mTLS port.
        self.auto_registration.controller = (
            f"{socket.gethostname()}/{self.settings.bind}:{self.xds_mtls_port}"
        )
        self.auto_registration.start()
        self.http_port = await self.http.start(
            self.settings.bind, self.settings.http_port, self.settings.extra_http_binds
        )
        self._watcher = asyncio.create_task(self._watch(), name="pilotfish-config-watch")
        self.ready = True
        log.info(
            "control plane ready: xDS on %s, HTTP on %s:%d, %d resources",
            f"{self.settings.bind}:{self.xds_port}" if self.settings.plaintext_xds else "mTLS only",
            self.settings.bind,
            self.http_port,
            len(self.generator.snapshot.resources),
        )
        if self.ca is not None:
            log.info(
                "mesh CA (trust domain %s) on %s:%d (TLS), xDS over mTLS on port %d",
                self.ca.trust_domain,
                self.settings.bind,
                self.secure_port,
                self.xds_mtls_port,
            )

    async def _start_ca_port(self, tls: TlsServerConfig) -> None:
        """Serve the CA on its own server-TLS port (agents have no certificate yet)."""
        assert self.ca is not None
        port = CaPort(self.ca.service.handler(), server_tls_credentials(tls))
        try:
            self.secure_port = await port.start(
                self.settings.bind, self.settings.secure_port, self.settings.extra_xds_binds
            )
        except BaseException:
            await port.close(0)
            await self.xds.close(0)
            raise
        self._ca_port = port

    def _start_ca(self) -> TlsServerConfig | None:
        """Load or create the CA and issue the secure ports' certificate (None: no CA)."""
        settings = self.settings
        if settings.ca_dir is None:
            return None
        authority = CertificateAuthority.load_or_create(
            Path(settings.ca_dir),
            settings.mesh.trust_domain,
            root_cert_file=settings.root_cert_file,
            root_key_file=settings.root_key_file,
        )
        ca = MeshCa(
            authority,
            self.registry,
            tokens=TokenRegistry(settings.ca_token_store),
            # Always persisted: a join token must survive a restart and be spent once
            # across every replica on the directory.
            join_tokens=JoinTokens(Path(settings.ca_dir) / JOIN_TOKEN_STORE_FILE),
            default_ttl=datetime.timedelta(seconds=settings.cert_ttl_seconds),
        )
        if settings.ca_tokens_file:
            loaded = ca.tokens.load_file(settings.ca_tokens_file)
            log.info("loaded %d CA tokens from %s", loaded, settings.ca_tokens_file)
        # Issued fresh at every start, so it never needs rotating while running.
        server = authority.issue_server_cert(
            (CONTROL_PLANE_DNS_NAME, "localhost"),
            (settings.bind, *settings.extra_xds_binds, "127.0.0.1", "::1"),
        )
        self.ca = ca
        return TlsServerConfig(
            cert_chain_pem="".join(server.issued.chain_pem).encode("ascii"),
            key_pem=server.key_pem,
            root_pem=authority.root_pem.encode("ascii"),
            trust_domain=settings.mesh.trust_domain,
        )

    async def close(self) -> None:
        self.ready = False
        await self.auto_registration.close()  # first: closing streams is no disconnect
        for task in (self._watcher, self._gc_pacing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._watcher = self._gc_pacing = None
        await self.http.close()
        ca_port, self._ca_port = self._ca_port, None
        if ca_port is not None:
            await ca_port.close()
        await self.xds.close()
        await self.jwks.close()
        if self.leadership is not None:
            await self.leadership.close()
        await self.store.close()

    def _rebuild(self) -> None:
        started = time.perf_counter()
        revision = self.store.revision
        resources = tuple(self.store.list())
        self.jwks.want(jwks_uris(resources))
        snapshot = build_snapshot(
            resources,
            revision,
            self.generator.snapshot,
            domain_suffix=self.settings.domain_suffix,
            service_cidr=self.settings.service_cidr,
            jwks=self.jwks.documents(),
            mesh=self.settings.mesh,
        )
        self.generator.set_snapshot(snapshot)
        for listener in self._snapshot_listeners:
            try:
                listener(snapshot)
            except Exception:
                log.exception("snapshot listener failed")
        elapsed = time.perf_counter() - started
        self._snapshot_seconds.observe(elapsed)
        log.debug(
            "snapshot r%d built in %.3fs (config gen %d, endpoint gen %d)",
            revision,
            elapsed,
            snapshot.config_generation,
            snapshot.endpoint_generation,
        )
        self._snapshots.inc()
        self._revision.set(revision)
        self._resources.set(len(snapshot.resources))
        self._report_diagnostics()

    def _report_diagnostics(self) -> None:
        """Gauges and log lines for the store's current problems. Called on every
        rebuild and when only the problems changed (a file broken again)."""
        diags = self.store.diagnostics()
        errors = sum(1 for d in diags if d.is_error)
        self._config_errors.set(errors)
        self._config_warnings.set(sum(1 for d in diags if d.severity is Severity.WARNING))
        # Each rebuild sees every standing error again (a pod turning ready is a
        # change too); an error is logged when it appears, not on every rebuild.
        current = {d.format() for d in diags if d.is_error}
        for text in sorted(current - self._logged_errors):
            log.error("config error: %s", text)
        self._logged_errors = current

    async def _watch(self) -> None:
        # From what the snapshot holds, not the store's revision when this task
        # first runs: a change made meanwhile (during start()) must not be skipped.
        seen = self.generator.snapshot.revision
        while True:
            await self.store.wait_for_change(seen)
            # Under a burst, wait for the push in flight and rest after the last
            # build (``BuildPacer``); an isolated change goes on at once.
            await self._pacer.turn(lambda: self.xds.push_pending, self.xds.wait_idle)
            seen = self.store.revision  # what this build covers, waited-for revisions too
            started = self._pacer_clock.now()
            try:
                self._rebuild()
            except Exception:  # a bug must not stop config from flowing
                log.exception("building a snapshot failed; keeping the previous one")
                continue
            finally:
                self._pacer.record(started, self._pacer_clock.now())
            self.xds.notify_change()

    def _jwks_changed(self) -> None:
        """A fetched JWKS changed: rebuild and push (before the first snapshot, the
        start-up rebuild picks it up)."""
        if not self._jwks_live:
            return
        try:
            self._rebuild()
        except Exception:
            log.exception("building a snapshot failed; keeping the previous one")
            return
        self.xds.notify_change()

    def notify_errors_changed(self) -> None:
        """Refresh the error gauges (the store reports errors without a new revision)."""
        diags = self.store.diagnostics()
        errors = sum(1 for d in diags if d.is_error)
        self._config_errors.set(errors)
        self._config_warnings.set(sum(1 for d in diags if d.severity is Severity.WARNING))
