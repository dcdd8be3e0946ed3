"""Naming resources on the command line and in configuration API paths.

Shared by ``apply``, ``delete`` and ``get``: which kind a word like ``vs``
means, the REST path of a kind/namespace/name, and the ``plural.group/name``
label kubectl users expect in output.
"""

from __future__ import annotations

import click

from pilotfish.api.kinds import (
    API_VERSIONS,
    KINDS,
    PREFERRED_API_VERSION,
    SHORT_NAMES,
    kind_for_plural,
    plural,
)

__all__ = ["SHORT_NAMES", "api_path", "label", "plural_of", "preferred_api_version", "resolve_kind"]


def resolve_kind(word: str) -> str:
    """The kind named by ``word``: plural, singular, Kind or short name, any case.

    Raises ``click.BadParameter`` naming the kinds the server knows.
    """
    lowered = word.lower()
    short = SHORT_NAMES.get(lowered)
    if short is not None and short in KINDS:
        return short
    try:
        return kind_for_plural(word)
    except KeyError:
        pass
    for kind in KINDS:  # kinds without a registered plural: Kind, kind, kinds
        if lowered in (kind.lower(), plural_of(kind)):
            return kind
    known = ", ".join(sorted({plural_of(k) for k in KINDS}))
    raise click.BadParameter(f"unknown resource type {word!r} (known: {known})")


def plural_of(kind: str) -> str:
    """The REST plural of ``kind`` (lower-case kind + "s" if none is registered)."""
    try:
        return plural(kind)
    except KeyError:
        return kind.lower() + "s"


def preferred_api_version(kind: str) -> str:
    """The apiVersion to address ``kind`` with when the user gave none."""
    preferred = PREFERRED_API_VERSION.get(kind)
    if preferred is not None:
        return preferred
    return sorted(API_VERSIONS.get(kind, frozenset({"v1"})))[0]


def api_path(kind: str, api_version: str, namespace: str | None, name: str | None = None) -> str:
    """REST path: one object, a namespace's collection, or (``namespace`` None) all."""
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    resource = plural_of(kind)
    if namespace is None:
        return f"{prefix}/{resource}"
    path = f"{prefix}/namespaces/{namespace}/{resource}"
    return f"{path}/{name}" if name else path


def label(kind: str, api_version: str, name: str) -> str:
    """``virtualservices.networking.istio.io/reviews`` (core kinds: ``services/reviews``)."""
    group = api_version.rpartition("/")[0]
    resource = plural_of(kind)
    return f"{resource}.{group}/{name}" if group else f"{resource}/{name}"
