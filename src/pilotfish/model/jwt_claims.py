"""VirtualService header keys that match JWT claims, as Istio spells them.

``@request.auth.claims.NAME`` (nested: ``@request.auth.claims.a.b``) or
``@request.auth.claims[NAME]`` (nested: ``[a][b]``, for names with dots) in a
``headers`` or ``withoutHeaders`` match is not a header: the route matches on
the payload of the JWT the ``jwt_authn`` filter verified (its dynamic
metadata). Istio accepts them only on VirtualServices bound to gateways.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CLAIM_PREFIX", "routing_claim"]

CLAIM_PREFIX: Final = "@request.auth.claims"


def routing_claim(name: str) -> tuple[str, ...] | None:
    """The claim path a header key names, or None when it is an ordinary header.

    As Istio's ``jwt.ToRoutingClaim``: the prefix in any case, then ``.a.b`` or
    ``[a][b]``. A key that starts with the prefix but names no claim
    (``@request.auth.claims``, ``...claims[]``) is None too.
    """
    if not name.lower().startswith(CLAIM_PREFIX):
        return None
    rest = name[len(CLAIM_PREFIX) :]
    if rest.startswith(".") and len(rest) > 1:
        return tuple(rest[1:].split("."))
    if rest.startswith("[") and rest.endswith("]") and len(rest) > 2:
        return tuple(rest[1:-1].split("]["))
    return None
