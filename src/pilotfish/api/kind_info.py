"""One record per kind Pilotfish serves: how documents name it and how REST paths address it.

Kinds are identified inside Pilotfish by a name unique across every group it
serves (the ``kind`` of ``ResourceKey``). Two groups can spell a kind the same
way in documents: the Gateway API's ``Gateway`` (``gateway.networking.k8s.io``)
and Istio's ``Gateway`` (``networking.istio.io``), or the Gateway API's and
SMI's ``TCPRoute``. Such a kind gets its own internal name (``KubernetesGateway``,
as Istio calls it internally) and keeps the document spelling in
``document_kind``; ``api/kinds.py`` resolves a document's apiVersion and kind
to the internal name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

__all__ = ["KindInfo"]


@dataclass(frozen=True, slots=True)
class KindInfo:
    """What the loader, the REST API and the CLI need to know about a kind."""

    #: Unique internal name (``ResourceKey.kind``).
    kind: str
    #: The spec schema (or, with ``top_level_fields``, the schema of those fields).
    schema: type[BaseModel]
    #: Accepted apiVersions; the newest stable one is written.
    api_versions: frozenset[str]
    #: Lower-case plural in REST paths and on the command line.
    plural: str
    #: ``kind`` as documents spell it, when it differs from the internal name.
    document_kind: str = ""
    #: For kinds without ``spec`` (Secret): the top-level keys given to ``schema``.
    top_level_fields: frozenset[str] | None = None
    #: kubectl short names (``gtw``, ``ing``).
    short_names: tuple[str, ...] = field(default=())

    @property
    def written_kind(self) -> str:
        return self.document_kind or self.kind

    @property
    def group(self) -> str:
        """The API group of the kind's apiVersions ("" for core ``v1``)."""
        return min(self.api_versions).rpartition("/")[0]
