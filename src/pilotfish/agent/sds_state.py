"""SDS bookkeeping for one Envoy stream, without any I/O (State of the World).

Theory of operation: Envoy opens ``StreamSecrets`` and asks for secrets by
name (``default``, ``ROOTCA``). The server answers with every subscribed
secret it has, under a version and a fresh nonce. Envoy then either ACKs
(echoes the nonce and the version, no ``error_detail``) or NACKs (echoes the
nonce with ``error_detail`` and its previous version). A request that echoes
the nonce with another version and no error (a subscription change after a
NACK) is neither. Requests echoing an older nonce are stale: a newer
response is already on its way, so they are ignored.

A response is sent only when what the stream should hold differs from what it
was last sent: the subscribed names that exist, with the content digest of
each. So a NACKed response is never re-sent in a loop (nothing changed), a
rotation that changes the certificate is pushed to every stream subscribed
to it, and a rotation that leaves the root unchanged does not resend ``ROOTCA``
to a stream that only asks for the root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SdsRequest", "SdsResponse", "SdsStreamState", "SecretSet"]


@dataclass(frozen=True, slots=True)
class SecretSet:
    """Serialized ``Secret`` messages by name, under one version string."""

    version: str
    secrets: Mapping[str, bytes]

    def digests(self, names: frozenset[str]) -> dict[str, str]:
        return {
            name: hashlib.sha256(self.secrets[name]).hexdigest()
            for name in sorted(names)
            if name in self.secrets
        }


@dataclass(frozen=True, slots=True)
class SdsRequest:
    names: tuple[str, ...]
    version_info: str = ""
    nonce: str = ""
    error_detail: str | None = None  # set on a NACK


@dataclass(frozen=True, slots=True)
class SdsResponse:
    version: str
    nonce: str
    names: tuple[str, ...]  # sorted; the secrets to send from the SecretSet


class SdsStreamState:
    """One stream's subscription, last response, ACK and NACK. See the module docstring."""

    def __init__(self, nonce_prefix: str = "") -> None:
        self._nonce_prefix = nonce_prefix
        self._nonce_counter = 0
        self.subscribed: frozenset[str] = frozenset()
        self._last_sent: dict[str, str] | None = None
        self._last_nonce = ""
        self._last_version = ""
        self._pending_names: tuple[str, ...] = ()
        self.acked_version = ""
        self.acked_names: frozenset[str] = frozenset()
        self.last_nack: str | None = None

    @property
    def last_nonce(self) -> str:
        return self._last_nonce

    def receive(self, request: SdsRequest, current: SecretSet) -> SdsResponse | None:
        """Apply one request from Envoy; return the response to send, if any."""
        if request.nonce:
            if request.nonce != self._last_nonce:
                return None  # stale: answers a response that was superseded
            if request.error_detail is not None:
                self.last_nack = request.error_detail
            elif request.version_info == self._last_version:
                self.acked_version = request.version_info
                self.acked_names = frozenset(self._pending_names)
                self.last_nack = None
        self.subscribed = frozenset(request.names)
        return self._plan(current)

    def update(self, current: SecretSet) -> SdsResponse | None:
        """The secrets changed; return the push for this stream, if it needs one."""
        return self._plan(current)

    def _plan(self, current: SecretSet) -> SdsResponse | None:
        wanted = current.digests(self.subscribed)
        if not wanted or wanted == self._last_sent:
            return None
        self._last_sent = wanted
        self._nonce_counter += 1
        self._last_nonce = f"{self._nonce_prefix}{self._nonce_counter}"
        self._last_version = current.version
        self._pending_names = tuple(sorted(wanted))
        return SdsResponse(current.version, self._last_nonce, self._pending_names)
