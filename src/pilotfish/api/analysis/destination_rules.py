"""DestinationRule analyzers (Istio's ``analyzers/destinationrule/ca-certificates.go``).

IST0128 / IST0129 NoServerCertificateVerification (destination / port
level): TLS origination in mode SIMPLE or MUTUAL without ``caCertificates``,
so the upstream's certificate is not checked against a CA of the user's
choosing. As in Istio, a ``credentialName`` on a DestinationRule with a
``workloadSelector`` (the gateway case, where the Secret may carry the CA)
does not count as missing. Subsets' own policies are not checked (Istio does
not either).
"""

from __future__ import annotations

from pilotfish.api.analysis.context import AnalysisContext, report
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.destination_rule import ClientTLSSettings, DestinationRuleSpec

__all__ = ["CODES", "check_destination_rules"]

CODES = ("IST0128", "IST0129")


def _unverified(tls: ClientTLSSettings | None, spec: DestinationRuleSpec) -> str:
    """The TLS mode when the server certificate goes unverified, else ""."""
    if tls is None or tls.mode not in ("SIMPLE", "MUTUAL"):
        return ""
    if tls.ca_certificates or (tls.credential_name and spec.workload_selector is not None):
        return ""
    return tls.mode


def check_destination_rules(ctx: AnalysisContext) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for r, spec in ctx.of(DestinationRuleSpec):
        policy = spec.traffic_policy
        if policy is None:
            continue
        mode = _unverified(policy.tls, spec)
        if mode:
            found.append(
                report(
                    r,
                    "spec.trafficPolicy.tls",
                    "IST0128",
                    f"TLS mode {mode} for host {spec.host} without caCertificates: the "
                    "server's certificate is not verified against a chosen CA",
                )
            )
        for i, port_policy in enumerate(policy.port_level_settings):
            mode = _unverified(port_policy.tls, spec)
            if mode:
                number = port_policy.port.number if port_policy.port is not None else 0
                found.append(
                    report(
                        r,
                        f"spec.trafficPolicy.portLevelSettings[{i}].tls",
                        "IST0129",
                        f"TLS mode {mode} for host {spec.host} port {number} without "
                        "caCertificates: the server's certificate is not verified against a "
                        "chosen CA",
                    )
                )
    return found
