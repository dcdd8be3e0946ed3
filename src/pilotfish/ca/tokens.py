"""Per-pod bootstrap tokens: who a CertificateService caller is.

The local runtime registers a random token for each pod it starts and hands it
to the pod's agent in a private file; a standalone control plane loads tokens
from an operator's file. A token authenticates a CSR as coming from one
(namespace, service account). Tokens are credentials: they never appear in a
repr, a log line or an error message.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pilotfish.ca.identity import SpiffeId

__all__ = ["Owner", "TokenFileError", "TokenRegistry"]


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
    """token -> Owner. Thread-safe: the runtime may register from another thread."""

    def __init__(self) -> None:
        self._owners: dict[str, Owner] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenRegistry({len(self)} tokens)"

    def __len__(self) -> int:
        return len(self._owners)

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
        if not token:
            raise ValueError("token must not be empty")
        owner = Owner(namespace, service_account or "default", pod)
        # Validate the names now, not on the first CSR.
        owner.identity("cluster.local")
        with self._lock:
            if pod:
                for old in [t for t, o in self._owners.items() if o.pod == pod]:
                    del self._owners[old]
            self._owners[token] = owner

    def revoke(self, pod: str) -> int:
        """Forget every token of ``pod``; returns how many were removed."""
        with self._lock:
            stale = [t for t, o in self._owners.items() if o.pod == pod]
            for token in stale:
                del self._owners[token]
        return len(stale)

    def lookup(self, token: str) -> Owner | None:
        """The owner of ``token``, or None for an unknown or empty token."""
        if not token:
            return None
        return self._owners.get(token)

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
            self.register_token(token, ns, sa, pod)
        return len(entries)
