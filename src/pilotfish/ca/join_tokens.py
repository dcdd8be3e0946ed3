"""Join tokens: single-use, expiring credentials that let a new host's workload in.

Theory of operation. An admin creates a join token (``pilotfish join-token
create``, through the control plane's HTTP API) for one namespace and service
account, optionally a WorkloadGroup, and a lifetime. The token itself is
shown once, to that admin; the CA keeps only its SHA-256 digest with the
grant (namespace, service account, group, expiry, and when it was used).

The first CSR that presents the token and asks for exactly the granted
identity consumes it: ``CertificateService`` first checks the grant without
consuming it (``check``), signs (a wrong identity or a bad CSR is refused
before the token is spent), then ``consume``s it; of two requests racing
with one token, only the first ``consume`` wins and the other is refused
("join token already used"). A used token stays listed, with ``usedAt``,
until ``RETAIN_AFTER_EXPIRY`` past its expiry, so a second use or a late
one is told why; after that it is forgotten (unknown).

With a ``store`` path (``<ca-dir>/join-tokens.json``, 0600, digests only),
grants are shared by every control-plane replica on the CA directory and
survive restarts: each change, and each ``consume``, holds an ``flock`` and
re-reads the file first (``shared_file``), so the single use holds across
processes as well as threads.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pilotfish.ca.shared_file import SharedFile
from pilotfish.ca.tokens import Owner, token_digest

__all__ = [
    "JOIN_TOKEN_PREFIX",
    "JOIN_TOKEN_STORE_FILE",
    "RETAIN_AFTER_EXPIRY",
    "JoinGrant",
    "JoinTokenRefused",
    "JoinTokens",
    "NewJoinToken",
]

JOIN_TOKEN_STORE_FILE = "join-tokens.json"
# Join tokens start with it: a token in the wrong file or log is recognisable.
JOIN_TOKEN_PREFIX = "pfjoin-"
# How long a used or expired grant is kept so its refusal can say why.
RETAIN_AFTER_EXPIRY = 86400.0
_STORE_VERSION = 1
MAX_TTL_SECONDS = 7 * 86400

_log = logging.getLogger("pilotfish.ca.join_tokens")


class JoinTokenRefused(Exception):
    """A known join token that may not be used (any more): ``reason`` is
    ``join_token_used`` or ``join_token_expired`` (a metrics label)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class JoinGrant:
    """What a join token allows. ``workload_group`` may be empty."""

    namespace: str
    service_account: str
    workload_group: str
    expires_at: float  # unix seconds
    used_at: float | None = None

    def owner(self, pod: str) -> Owner:
        return Owner(self.namespace, self.service_account, pod)

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "serviceAccount": self.service_account,
            "workloadGroup": self.workload_group,
            "expiresAt": self.expires_at,
            "usedAt": self.used_at,
        }

    @classmethod
    def from_json(cls, item: Any) -> JoinGrant:
        used = item.get("usedAt")
        grant = cls(
            str(item["namespace"]),
            str(item["serviceAccount"]),
            str(item.get("workloadGroup", "")),
            float(item["expiresAt"]),
            None if used is None else float(used),
        )
        grant.owner("").identity("cluster.local")  # validates the names
        return grant


@dataclass(frozen=True, slots=True)
class NewJoinToken:
    """A freshly created token (shown once) and its grant."""

    token: str = field(repr=False)
    grant: JoinGrant


class JoinTokens:
    """sha256(join token) -> JoinGrant; thread-safe, optionally shared through ``store``."""

    def __init__(
        self, store: Path | str | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._grants: dict[str, JoinGrant] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._store = SharedFile(Path(store)) if store is not None else None
        with self._lock:
            self._refresh()

    def __repr__(self) -> str:
        return f"JoinTokens({len(self._grants)} grants)"

    def create(
        self, namespace: str, service_account: str, workload_group: str, ttl_seconds: float
    ) -> NewJoinToken:
        """A new random token for (namespace, service account[, group]) valid ``ttl_seconds``."""
        if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
            raise ValueError(f"a join token's TTL must be in (0, {MAX_TTL_SECONDS}] seconds")
        grant = JoinGrant(
            namespace, service_account or "default", workload_group, self._clock() + ttl_seconds
        )
        grant.owner("").identity("cluster.local")  # refuse bad names now, not at the CSR
        token = JOIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._changing():
            self._grants[token_digest(token)] = grant
        _log.info(
            "join token created for %s/%s (group %s), expires in %.0fs",
            grant.namespace,
            grant.service_account,
            grant.workload_group or "-",
            ttl_seconds,
        )
        return NewJoinToken(token, grant)

    def check(self, token: str) -> JoinGrant | None:
        """The grant of an unused, unexpired ``token``; None for a token that is not a
        join token. Raises ``JoinTokenRefused`` for one used or expired."""
        if not token:
            return None
        with self._lock:
            if self._store is not None and self._store.changed():
                self._grants = self._read()
            grant = self._grants.get(token_digest(token))
        if grant is not None:
            self._refuse_if_spent(grant)
        return grant

    def consume(self, token: str) -> JoinGrant:
        """Spend ``token`` atomically (across threads and processes on the store).

        Raises ``JoinTokenRefused`` when it is used or expired, KeyError when unknown.
        """
        digest = token_digest(token)
        with self._changing():
            grant = self._grants[digest]
            self._refuse_if_spent(grant)
            self._grants[digest] = replace(grant, used_at=self._clock())
        return grant

    def _refuse_if_spent(self, grant: JoinGrant) -> None:
        if grant.used_at is not None:
            raise JoinTokenRefused("join token already used", "join_token_used")
        if self._clock() >= grant.expires_at:
            raise JoinTokenRefused("join token expired", "join_token_expired")

    # -- the store -------------------------------------------------------------

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Both locks held, the store re-read, around a change; then purge and write."""
        lock = self._store.locked() if self._store is not None else contextlib.nullcontext()
        with self._lock, lock:
            self._refresh(force=True)
            yield
            now = self._clock()
            self._grants = {
                d: g for d, g in self._grants.items() if now < g.expires_at + RETAIN_AFTER_EXPIRY
            }
            if self._store is not None:
                grants = [{"sha256": d, **g.to_json()} for d, g in sorted(self._grants.items())]
                self._store.write_json({"version": _STORE_VERSION, "grants": grants})

    def _refresh(self, *, force: bool = False) -> None:
        if self._store is not None and (self._store.changed() or force):
            self._grants = self._read()

    def _read(self) -> dict[str, JoinGrant]:
        assert self._store is not None
        try:
            doc = self._store.read_json()
            if doc is None:
                return {}
            grants: dict[str, JoinGrant] = {}
            for item in doc["grants"]:
                digest = str(item["sha256"])
                if len(digest) != 64:
                    raise ValueError("not a SHA-256 digest")
                grants[digest] = JoinGrant.from_json(item)
            return grants
        except (OSError, KeyError, TypeError, ValueError) as exc:
            # Fewer valid join tokens is the safe side: an admin creates a new one.
            _log.warning("ignoring unusable join token store %s: %s", self._store.path, exc)
            return {}
