"""Source-dependent VirtualService matches (``sourceLabels``, ``sourceNamespace``).

Theory of operation: a match with ``sourceLabels`` or ``sourceNamespace``
applies only to clients whose proxy has those labels / that namespace, so the
outbound routes of a sidecar can depend on its labels. Pilotfish decides
these matches at translation time (a rule that does not apply to the client
is left out of its routes), as Istio does.

Outbound translation is shared between sidecars through a cache key
(``ProxyView.outbound_key`` -> ``OutboundKey``). Labels are in it only as the
proxy's values of the label keys some ``sourceLabels`` selector of the snapshot
mentions (``source_label_keys``), so that meshes without ``sourceLabels`` keep
one outbound translation per namespace: two proxies that agree on those keys
get identical outbound config, because a selector only reads the keys it names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pilotfish.model.snapshot import Snapshot

__all__ = ["source_label_keys", "source_matches"]


def source_matches(
    source_labels: Mapping[str, str],
    source_namespace: str | None,
    proxy_labels: Mapping[str, str],
    proxy_namespace: str,
) -> bool:
    """Whether a client proxy with these labels and namespace satisfies the match."""
    if source_namespace and source_namespace != proxy_namespace:
        return False
    return all(proxy_labels.get(k) == v for k, v in source_labels.items())


def _selectors(snapshot: Snapshot) -> Iterable[Mapping[str, str]]:
    for vs in snapshot.of_kind("VirtualService"):
        spec = vs.spec
        for group in ("http", "tcp", "tls"):
            for rule in getattr(spec, group, ()):
                for match in getattr(rule, "match", ()):
                    labels = getattr(match, "source_labels", None)
                    if labels:
                        yield labels


def source_label_keys(snapshot: Snapshot) -> frozenset[str]:
    """Every label key named by a ``sourceLabels`` selector of any VirtualService."""
    return frozenset(k for labels in _selectors(snapshot) for k in labels)
