"""Read-only sync status of connected proxies (for /debug/syncz and proxy-status)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pilotfish.xds.server.state import StreamStateBase
from pilotfish.xds.types import SECRET_TYPE, TYPE_SHORT_NAMES

__all__ = ["ProxyStatus", "TypeStatus", "type_statuses"]


@dataclass(frozen=True, slots=True)
class TypeStatus:
    """One xDS type on one proxy stream.

    Versions are empty strings until something was sent or ACKed.
    ``nack_message`` is Envoy's error for the last NACK, or None when the
    proxy has ACKed a response since (or never NACKed).
    """

    type_url: str
    subscribed: bool
    sent_version: str
    sent_nonce: str
    acked_version: str
    nack_message: str | None = None
    nack_version: str | None = None
    nack_at: float | None = None  # wall-clock seconds since the epoch

    @property
    def short_name(self) -> str:
        return TYPE_SHORT_NAMES.get(self.type_url, self.type_url)

    @property
    def synced(self) -> bool:
        """True when the proxy has ACKed exactly what it was last sent."""
        return bool(self.sent_version) and self.acked_version == self.sent_version

    def to_json(self) -> dict[str, Any]:
        return {
            "type_url": self.type_url,
            "subscribed": self.subscribed,
            "sent_version": self.sent_version,
            "sent_nonce": self.sent_nonce,
            "acked_version": self.acked_version,
            "nack_message": self.nack_message,
            "nack_version": self.nack_version,
            "nack_at": self.nack_at,
        }


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    """The sync state of one connected proxy (its newest stream).

    ``types`` maps every known type URL (in push order) to its status (SDS only
    when subscribed).
    ``connected_at`` is wall-clock seconds since the epoch. ``identity`` is the
    stream's verified SPIFFE id ("" on the plain-text port);
    ``secrets_denied`` maps credential secret names the proxy asked for and was
    refused to the reason (names only, never contents). ``inconsistent`` lists
    what its configuration names but does not hold (``pilotfish.xds.consistency``);
    ``protocol`` is the stream's ADS variant (``sotw`` or ``delta``).
    """

    proxy_id: str
    connected_at: float
    view: str
    types: Mapping[str, TypeStatus] = field(hash=False)
    identity: str = ""
    secrets_denied: Mapping[str, str] = field(default_factory=dict, hash=False)
    # Resources the configuration names but lacks: ``{"kind", "missing"}`` per type.
    inconsistent: tuple[Mapping[str, object], ...] = field(default=(), hash=False)
    protocol: str = "sotw"  # the ADS variant of the stream: "sotw" or "delta"

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict; per-type entries are keyed by short name (CDS, ...)."""
        return {
            "proxy_id": self.proxy_id,
            "connected_at": self.connected_at,
            "view": self.view,
            "types": {st.short_name: st.to_json() for st in self.types.values()},
            "identity": self.identity,
            "secrets_denied": dict(self.secrets_denied),
            "inconsistent": [dict(v) for v in self.inconsistent],
            "protocol": self.protocol,
        }


def type_statuses(state: StreamStateBase) -> dict[str, TypeStatus]:
    """Snapshot the per-type state of one stream. Secrets (SDS) are listed only
    once the proxy subscribed to them: most proxies use none."""
    out: dict[str, TypeStatus] = {}
    for url, ts in state.types.items():
        if url == SECRET_TYPE and not ts.requested:
            continue
        nack = ts.nack
        out[url] = TypeStatus(
            type_url=url,
            subscribed=ts.requested,
            sent_version=ts.sent_version,
            sent_nonce=ts.sent_nonce,
            acked_version=ts.acked_version,
            nack_message=None if nack is None else nack.message,
            nack_version=None if nack is None else nack.version,
            nack_at=None if nack is None else nack.at,
        )
    return out
