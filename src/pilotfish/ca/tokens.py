"""Per-pod bootstrap tokens: who a CertificateService caller is.

The local runtime registers a random token for each pod it starts and hands it
to the pod's agent in a private file; a standalone control plane loads tokens
from an operator's file. A token authenticates a CSR as coming from one
(namespace, service account). Tokens are credentials: they never appear in a
repr, a log line or an error message.

Only the SHA-256 of each token is kept, and tokens are looked up by that
digest. With a ``store`` path (the local runtime keeps ``pod-tokens.json``
in the CA directory), every change to the runtime's tokens is written there
atomically (0600, digests only) and the file is reloaded at start: a
restarted control plane still knows the tokens of pods that kept running,
so their agents can renew their certificates. Tokens loaded from an
operator's file (``load_file``) are not written to the store.

The store is shared by every control-plane replica that uses the same CA
directory, so a token the runtime registers with one replica is accepted by
all of them. The file is the truth for persisted tokens: each change locks
``<store>.lock`` (``flock``), re-reads the file, applies itself and writes
the file back, so two replicas never lose each other's changes; a lookup
re-reads the file first when it changed since it was last read (one
``stat``), so a revocation on one replica holds on the others too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pilotfish.ca.identity import SpiffeId
from pilotfish.ca.shared_file import SharedFile

__all__ = ["TOKEN_STORE_FILE", "Owner", "TokenFileError", "TokenRegistry", "token_digest"]

# The runtime's persisted registry, in the CA directory.
TOKEN_STORE_FILE = "pod-tokens.json"
_STORE_VERSION = 1

_log = logging.getLogger("pilotfish.ca.tokens")


def token_digest(token: str) -> str:
    """The hex SHA-256 of a token: what the registry keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenFileError(ValueError):
    """A tokens file cannot be read or has a malformed entry."""


@dataclass(frozen=True, slots=True)
class Owner:
    """Whom a token belongs to. ``pod`` is an opaque id (the runtime uses
    ``<name>.<namespace>``); empty for tokens loaded from a file without one."""

    namespace: str
    service_account: str
    pod: str = ""

    def identity(self, trust_domain: str) -> SpiffeId:
        return SpiffeId(trust_domain, self.namespace, self.service_account)


class TokenRegistry:
    """sha256(token) -> Owner. Thread-safe: the runtime may register from another thread.

    ``store``: file where registered tokens' digests are persisted and shared
    with other processes (see the module docstring); None keeps them in memory only.
    """

    def __init__(self, store: Path | str | None = None) -> None:
        self._persisted: dict[str, Owner] = {}  # registered here or by another replica
        self._loaded: dict[str, Owner] = {}  # from an operator's file, never persisted
        self._lock = threading.Lock()
        self._store = SharedFile(Path(store)) if store is not None else None
        if self._store is not None:
            with self._lock:
                self._refresh()

    def __repr__(self) -> str:
        return f"TokenRegistry({len(self)} tokens)"

    def __len__(self) -> int:
        return len(self._persisted.keys() | self._loaded.keys())

    def register(self, namespace: str, service_account: str, pod: str) -> str:
        """Create and register a new random token for ``pod``; returns it.

        Any earlier token of the same (non-empty) ``pod`` is revoked: a restarted
        pod gets a fresh credential and the old one stops working.
        """
        token = secrets.token_urlsafe(32)
        self.register_token(token, namespace, service_account, pod)
        return token

    def register_token(self, token: str, namespace: str, service_account: str, pod: str) -> None:
        """Register a caller-chosen token (replacing other tokens of a non-empty ``pod``)."""
        self._register(token, namespace, service_account, pod, persist=True)

    def _register(
        self, token: str, namespace: str, service_account: str, pod: str, *, persist: bool
    ) -> None:
        if not token:
            raise ValueError("token must not be empty")
        owner = Owner(namespace, service_account or "default", pod)
        # Validate the names now, not on the first CSR.
        owner.identity("cluster.local")
        digest = token_digest(token)
        with self._changing():
            if pod:
                for table in (self._persisted, self._loaded):
                    for old in [d for d, o in table.items() if o.pod == pod]:
                        del table[old]
            (self._persisted if persist else self._loaded)[digest] = owner

    def revoke(self, pod: str) -> int:
        """Forget every token of ``pod``; returns how many were removed."""
        return self._revoke_where(lambda o: o.pod == pod)

    def retain_pods(self, pods: Iterable[str]) -> int:
        """Revoke the tokens of every pod not in ``pods`` (tokens without a pod stay)."""
        keep = set(pods)
        return self._revoke_where(lambda o: bool(o.pod) and o.pod not in keep)

    def _revoke_where(self, match: Callable[[Owner], bool]) -> int:
        removed = 0
        with self._changing():
            for table in (self._persisted, self._loaded):
                stale = [d for d, o in table.items() if match(o)]
                for digest in stale:
                    del table[digest]
                removed += len(stale)
        return removed

    def lookup(self, token: str) -> Owner | None:
        """The owner of ``token``, or None for an unknown or empty token."""
        if not token:
            return None
        digest = token_digest(token)
        with self._lock:
            self._refresh()
            return self._persisted.get(digest) or self._loaded.get(digest)

    # -- the store -------------------------------------------------------------

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold both locks, with the store re-read, around a change; then write it."""
        with self._lock, self._store_lock():
            self._refresh(force=True)
            yield
            self._save()

    def _store_lock(self) -> contextlib.AbstractContextManager[None]:
        """The store's lock file, held exclusively (nothing without a store)."""
        return self._store.locked() if self._store is not None else contextlib.nullcontext()

    def _refresh(self, *, force: bool = False) -> None:
        """Re-read the store if it changed since last read (call with the lock held)."""
        if self._store is None:
            return
        if self._store.changed() or force:
            self._persisted = self._read_store(self._store)

    def _save(self) -> None:
        """Write the persisted digests atomically, 0600 (call with both locks held)."""
        if self._store is None:
            return
        entries = [
            {
                "sha256": d,
                "namespace": o.namespace,
                "serviceAccount": o.service_account,
                "pod": o.pod,
            }
            for d, o in sorted(self._persisted.items())
        ]
        self._store.write_json({"version": _STORE_VERSION, "tokens": entries})

    @staticmethod
    def _read_store(store: SharedFile) -> dict[str, Owner]:
        try:
            doc: Any = store.read_json()
        except (OSError, ValueError) as exc:
            # Fewer known tokens is the safe side: pods restarted later get new ones.
            _log.warning("ignoring unreadable CA token store %s: %s", store.path, exc)
            return {}
        if doc is None:
            return {}
        owners: dict[str, Owner] = {}
        try:
            for item in doc["tokens"]:
                digest = str(item["sha256"])
                owner = Owner(str(item["namespace"]), str(item["serviceAccount"]), str(item["pod"]))
                owner.identity("cluster.local")
                if len(digest) != 64:
                    raise ValueError("not a SHA-256 digest")
                owners[digest] = owner
        except (KeyError, TypeError, ValueError) as exc:
            _log.warning("ignoring malformed CA token store %s: %s", store.path, exc)
            return {}
        return owners

    def load_file(self, path: Path | str) -> int:
        """Register the tokens listed in a YAML or JSON file; returns how many.

        The file is a list of ``{token, namespace, serviceAccount, pod?}``
        (``serviceAccount`` defaults to ``default``). The whole file is checked
        before any token is registered.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TokenFileError(f"cannot read tokens file {path}: {exc.strerror}") from exc
        try:
            doc: Any = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise TokenFileError(f"tokens file {path} is not valid YAML/JSON: {exc}") from exc
        if doc is None:
            doc = []
        if not isinstance(doc, list):
            raise TokenFileError(f"tokens file {path} must be a list of entries")
        entries: list[tuple[str, str, str, str]] = []
        for index, item in enumerate(doc):
            where = f"{path} entry {index}"
            if not isinstance(item, dict):
                raise TokenFileError(f"{where}: must be a mapping")
            token, ns = item.get("token"), item.get("namespace")
            sa = item.get("serviceAccount", "default")
            pod = item.get("pod", "")
            if not isinstance(token, str) or not token:
                raise TokenFileError(f"{where}: 'token' must be a non-empty string")
            if not isinstance(ns, str) or not ns:
                raise TokenFileError(f"{where}: 'namespace' must be a non-empty string")
            if not isinstance(sa, str) or not isinstance(pod, str):
                raise TokenFileError(f"{where}: 'serviceAccount' and 'pod' must be strings")
            try:
                Owner(ns, sa or "default", pod).identity("cluster.local")
            except ValueError as exc:
                raise TokenFileError(f"{where}: {exc}") from exc
            entries.append((token, ns, sa or "default", pod))
        for token, ns, sa, pod in entries:
            self._register(token, ns, sa, pod, persist=False)
        return len(entries)
