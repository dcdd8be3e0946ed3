"""Kubernetes ``v1`` Secret, and the one way its contents leave Pilotfish: redacted.

A Secret has no ``spec``: ``type``, ``data`` (base64 values), ``stringData``
(plain values) and ``immutable`` sit at the top level of the document. The
loader gives them to ``SecretSpec`` as if they were a spec (``TOP_LEVEL_FIELDS``),
and field paths in diagnostics are the top-level ones (``data['tls.crt']``).

Secret values must never be printed: ``SecretSpec``'s ``repr`` hides them,
diagnostics name keys but never values, and every read API passes documents
through ``redact_document`` (keys and ``type`` stay visible).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

from pydantic import Field

from pilotfish.api.base import ApiModel

__all__ = [
    "REDACTED",
    "SECRET_TYPE_OPAQUE",
    "SECRET_TYPE_TLS",
    "TOP_LEVEL_FIELDS",
    "SecretSpec",
    "decode_base64",
    "redact_document",
]

SECRET_TYPE_OPAQUE: Final = "Opaque"
SECRET_TYPE_TLS: Final = "kubernetes.io/tls"
#: What every redacted value is replaced with.
REDACTED: Final = "<redacted>"
#: The document's top-level keys that form a Secret's "spec" (YAML spelling).
TOP_LEVEL_FIELDS: Final = frozenset({"type", "data", "stringData", "immutable"})
_VALUE_FIELDS: Final = ("data", "stringData")


def decode_base64(value: str) -> bytes:
    """Decode a ``data`` value as Kubernetes does (standard alphabet, padded;
    line breaks ignored). Raises ``ValueError`` whose message never holds ``value``."""
    try:
        return base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None


class SecretSpec(ApiModel):
    """The contents of a Secret. ``stringData`` entries win over ``data`` ones."""

    type: str = SECRET_TYPE_OPAQUE
    data: dict[str, str] = Field(default_factory=dict)
    string_data: dict[str, str] = Field(default_factory=dict)
    immutable: bool | None = None

    def decoded(self) -> dict[str, bytes]:
        """Every key's bytes: ``data`` base64-decoded, then ``stringData`` (UTF-8) on top.

        Raises ``ValueError`` naming the key (never the value) if a ``data``
        value is not base64; a loaded Secret has been validated, so it does not.
        """
        out: dict[str, bytes] = {}
        for key, value in self.data.items():
            try:
                out[key] = decode_base64(value)
            except ValueError as exc:
                raise ValueError(f"data[{key!r}] {exc}") from None
        for key, value in self.string_data.items():
            out[key] = value.encode("utf-8")
        return out

    def __repr_args__(self) -> Any:
        # Keep secrets out of logs and tracebacks that print the model.
        for name, value in super().__repr_args__():
            if name in ("data", "string_data") and isinstance(value, Mapping):
                yield name, dict.fromkeys(value, REDACTED)
            else:
                yield name, value


def redact_document(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` that is safe to show: for ``kind: Secret`` every value of
    ``data`` and ``stringData`` (top level, or under ``spec`` for documents built
    from the model) becomes ``REDACTED``; other kinds are returned unchanged."""
    out = dict(doc)
    if out.get("kind") != "Secret":
        return out
    _redact_values(out)
    spec = out.get("spec")
    if isinstance(spec, Mapping):
        out["spec"] = dict(spec)
        _redact_values(out["spec"])
    return out


def _redact_values(part: dict[str, Any]) -> None:
    for name in _VALUE_FIELDS:
        values = part.get(name)
        if isinstance(values, Mapping):
            part[name] = dict.fromkeys((str(k) for k in values), REDACTED)
        elif values is not None:
            part[name] = REDACTED
