"""Telemetry ``tagOverrides`` values: the CEL forms Pilotfish turns into Envoy formats.

Istio evaluates a tag override's ``value`` as a CEL expression. Pilotfish
supports the forms that cover nearly every real use, and rejects the rest at
validation (so nothing is silently dropped):

- ``request.headers['x-name']`` (or ``"x-name"``): the request header, ``%REQ(x-name)%``;
- a string literal, ``'text'`` or ``"text"``: the text itself.
"""

from __future__ import annotations

import re

__all__ = ["SUPPORTED_FORMS", "tag_value_format"]

SUPPORTED_FORMS = "request.headers['NAME'] or a quoted string literal"

_HEADER = re.compile(r"""^request\.headers\[\s*(['"])([A-Za-z0-9_.:-]+)\1\s*\]$""")
_LITERAL = re.compile(r"""^(['"])([^'"\\%]*)\1$""")


def tag_value_format(expression: str) -> str | None:
    """The Envoy substitution format for ``expression``, None when unsupported."""
    text = expression.strip()
    header = _HEADER.match(text)
    if header is not None:
        return f"%REQ({header.group(2)})%"
    literal = _LITERAL.match(text)
    if literal is not None:
        return literal.group(2)
    return None
