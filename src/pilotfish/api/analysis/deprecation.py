"""IST0002 Deprecated: a field Istio has deprecated (Istio's ``deprecation/``).

Istio's analyzer is hand-written from the ``[deprecated=true]`` fields of its
protos; so is this one, for the fields of accepted kinds:

- a VirtualService's ``fault.delay.percent`` (use ``percentage``; Pilotfish,
  as Istio, still applies it when ``percentage`` is unset);
- a VirtualService's ``mirrorPercent`` (use ``mirrorPercentage``), which
  Istio's analyzer does not check although its proto deprecates it;
- a Sidecar's ``outboundTrafficPolicy.egressProxy``, which Istio and
  Pilotfish ignore.

Istio's other Deprecated findings are on kinds Pilotfish does not accept
(its removed ``rbac.istio.io`` CRDs) or on the Lightstep tracing provider,
which Pilotfish's mesh config does not have.
"""

from __future__ import annotations

from pilotfish.api.analysis.context import AnalysisContext, report
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.sidecar import SidecarSpec
from pilotfish.api.networking.virtual_service import VirtualServiceSpec

__all__ = ["CODES", "check_deprecated_fields"]

CODES = ("IST0002",)


def check_deprecated_fields(ctx: AnalysisContext) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for r, vs in ctx.of(VirtualServiceSpec):
        for i, http in enumerate(vs.http):
            delay = http.fault.delay if http.fault is not None else None
            if delay is not None and delay.percent:
                found.append(
                    report(
                        r,
                        f"spec.http[{i}].fault.delay.percent",
                        "IST0002",
                        "fault.delay.percent is deprecated; use fault.delay.percentage",
                    )
                )
            if http.mirror_percent is not None:
                found.append(
                    report(
                        r,
                        f"spec.http[{i}].mirrorPercent",
                        "IST0002",
                        "mirrorPercent is deprecated; use mirrorPercentage",
                    )
                )
    for r, sc in ctx.of(SidecarSpec):
        policy = sc.outbound_traffic_policy
        if policy is not None and policy.egress_proxy is not None:
            found.append(
                report(
                    r,
                    "spec.outboundTrafficPolicy.egressProxy",
                    "IST0002",
                    "outboundTrafficPolicy.egressProxy is deprecated and ignored",
                )
            )
    return found
