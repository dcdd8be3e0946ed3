"""IST0149 JwtClaimBasedRoutingWithoutRequestAuthN (Istio's
``virtualservice/jwtclaimroute.go``).

A VirtualService bound to a gateway that matches ``@request.auth.claims.*``
routes on the payload of a JWT the gateway validated; without a
RequestAuthentication applying to the gateway's pods, no token is validated,
no claim is ever present and the route never matches. A RequestAuthentication
applies to a pod when it is in the pod's namespace or the mesh's root
namespace and has no selector, or a selector matching the pod's labels.
"""

from __future__ import annotations

from collections.abc import Iterator

from pilotfish.api.analysis.context import AnalysisContext, report
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.gateway import GatewaySpec
from pilotfish.api.networking.virtual_service import VirtualServiceSpec
from pilotfish.api.security.request_authentication import RequestAuthenticationSpec
from pilotfish.api.validation.pod_index import Pod, matches
from pilotfish.model.jwt_claims import routing_claim

__all__ = ["CODES", "check_jwt_routing"]

CODES = ("IST0149",)


def _gateway_key(ref: str, namespace: str) -> tuple[str, str]:
    ns, sep, name = ref.partition("/")
    return (ns, name) if sep else (namespace, ref)


def check_jwt_routing(ctx: AnalysisContext) -> list[Diagnostic]:
    root = ctx.mesh.root_namespace if ctx.mesh is not None else "istio-system"
    policies = ctx.of(RequestAuthenticationSpec)
    gateways = {(r.namespace, r.name): spec for r, spec in ctx.of(GatewaySpec)}

    def authenticated(pod: Pod) -> bool:
        for r, spec in policies:
            if r.namespace not in (pod.namespace, root) or spec.target_ref or spec.target_refs:
                continue
            if spec.selector is None or matches(spec.selector.match_labels, pod.labels):
                return True
        return False

    found: list[Diagnostic] = []
    for r, spec in ctx.of(VirtualServiceSpec):
        refs = [g for g in spec.gateways if g != "mesh"]
        for path, key in _claim_keys(spec) if refs else ():
            for ref in refs:
                gw = gateways.get(_gateway_key(ref, r.namespace))
                if gw is None or not gw.selector:
                    continue  # a missing gateway is IST0101
                bare = [p for p in ctx.pods.selected(gw.selector, None) if not authenticated(p)]
                if not bare:
                    continue
                pod = bare[0]
                who = pod.resource.name if pod.resource else "built-in gateway"
                found.append(
                    report(
                        r,
                        path,
                        "IST0149",
                        f"routes on JWT claim {key!r} but no RequestAuthentication applies to "
                        f"gateway {ref} (pod {pod.namespace}/{who}): no token is validated, "
                        "the route never matches",
                    )
                )
    return found


def _claim_keys(spec: VirtualServiceSpec) -> Iterator[tuple[str, str]]:
    """``(field path, key)`` of every ``@request.auth.claims.*`` key of the HTTP matches."""
    for i, http in enumerate(spec.http):
        for j, match in enumerate(http.match):
            for field, table in (
                ("headers", match.headers),
                ("withoutHeaders", match.without_headers),
            ):
                for key in table:
                    if routing_claim(key) is not None:
                        yield f"spec.http[{i}].match[{j}].{field}.{key}", key
