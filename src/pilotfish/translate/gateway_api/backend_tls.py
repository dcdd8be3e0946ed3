"""BackendTLSPolicy -> DestinationRules that originate TLS to the targeted Services.

Theory of operation: each targeted Service (``group: ""``, ``kind: Service``,
in the policy's namespace; ``sectionName`` names one of its ports) gets a
DestinationRule in the policy's namespace, exported everywhere, whose TLS
settings are ``SIMPLE`` with the policy's ``hostname`` as SNI and as the
expected certificate name (or its ``subjectAltNames``). The CA comes from:

- ``caCertificateRefs``: ConfigMaps with a ``ca.crt`` key. Pilotfish serves
  CAs to proxies as Secrets over SDS, so the converter derives a Secret
  (``<policy>-<configmap>-ca-gwapi``) holding that ``ca.crt`` and names it
  as the DestinationRule's ``credentialName``. Proxies only receive their own
  namespace's Secrets, so this works for clients in the policy's namespace;
  a gateway in another namespace fails closed (its cluster cannot connect).
- ``wellKnownCACertificates: System``: the system bundle
  (``SYSTEM_CA_BUNDLE``).

Status follows the policy-attachment convention: ``ancestors`` are the
Gateways whose routes send traffic to a targeted Service, each with
Accepted and ResolvedRefs.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Final

from pilotfish.api.core.config_map import ConfigMapSpec
from pilotfish.api.core.secret import SecretSpec
from pilotfish.api.core.service import ServiceSpec
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.gateway_api.common import GROUP
from pilotfish.api.gateway_api.policies import BackendTLSPolicySpec
from pilotfish.api.networking.common import PortSelector
from pilotfish.api.networking.destination_rule import (
    ClientTLSSettings,
    DestinationRuleSpec,
    PortTrafficPolicy,
    TrafficPolicy,
)
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.api.validation.findings import Findings
from pilotfish.translate.gateway_api.derived import derived, safe_name
from pilotfish.translate.gateway_api.index import ConfigIndex
from pilotfish.translate.gateway_api.status import Condition, conditions

__all__ = ["SYSTEM_CA_BUNDLE", "convert_backend_tls"]

#: The system's CA bundle (Debian/Ubuntu path), for ``wellKnownCACertificates: System``.
SYSTEM_CA_BUNDLE: Final = "/etc/ssl/certs/ca-certificates.crt"


def _ca_secret(
    policy: Resource, spec: BackendTLSPolicySpec, config_maps: dict[tuple[str, str], Resource]
) -> tuple[Resource | None, Condition | None]:
    """The derived Secret holding the policy's CA, or the ResolvedRefs failure."""
    ref = spec.validation.ca_certificate_refs[0]
    if ref.group != "" or ref.kind != "ConfigMap":
        return None, Condition(
            "ResolvedRefs", False, "InvalidKind", f"caCertificateRef {ref.kind}: only ConfigMaps"
        )
    cm = config_maps.get((policy.namespace, ref.name))
    data = cm.spec.data if cm is not None and isinstance(cm.spec, ConfigMapSpec) else {}
    if "ca.crt" not in data:
        return None, Condition(
            "ResolvedRefs",
            False,
            "InvalidCACertificateRef",
            f"ConfigMap {policy.namespace}/{ref.name} with key ca.crt not found",
        )
    encoded = base64.b64encode(data["ca.crt"].encode()).decode()
    secret = derived(
        "Secret",
        "v1",
        policy.namespace,
        safe_name(policy.name, ref.name, "ca"),
        SecretSpec(data={"ca.crt": encoded}),
        [policy],
    )
    return secret, None


def _port_of(service: Resource | None, section: str | None) -> int | None:
    if service is None or section is None or not isinstance(service.spec, ServiceSpec):
        return None
    return next((p.port for p in service.spec.ports if p.name == section), None)


def _ancestors(
    resources: tuple[Resource, ...], namespace: str, services: set[str]
) -> list[dict[str, Any]]:
    """Gateways (as parentRefs) of the routes that send traffic to these Services."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for route in resources:
        if route.kind not in ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute"):
            continue
        spec: Any = route.spec
        refs = [b for rule in spec.rules for b in rule.backend_refs]
        if not any(
            b.kind == "Service"
            and (b.namespace or route.namespace) == namespace
            and b.name in services
            for b in refs
        ):
            continue
        for parent in spec.parent_refs:
            if parent.kind == "Gateway" and parent.group == GROUP:
                ns = parent.namespace or route.namespace
                found[(ns, parent.name)] = {
                    "group": GROUP,
                    "kind": "Gateway",
                    "namespace": ns,
                    "name": parent.name,
                }
    return [found[k] for k in sorted(found)]


def _policy(
    policy: Resource,
    index: ConfigIndex,
    config_maps: dict[tuple[str, str], Resource],
    findings: Findings,
) -> tuple[list[Resource], list[Condition], set[str]]:
    spec = policy.spec
    assert isinstance(spec, BackendTLSPolicySpec)
    out: list[Resource] = []
    credential = None
    ca_file = None
    failed: Condition | None = None
    if spec.validation.ca_certificate_refs:
        secret, failed = _ca_secret(policy, spec, config_maps)
        if secret is not None:
            out.append(secret)
            credential = secret.name
    else:
        ca_file = SYSTEM_CA_BUNDLE
    if failed is not None:
        findings.warning(
            "spec.validation.caCertificateRefs[0]", f"{failed.reason}: {failed.message}"
        )
    sans = [s.hostname or s.uri or "" for s in spec.validation.subject_alt_names]
    tls = ClientTLSSettings(
        mode="SIMPLE",
        credential_name=credential,
        ca_certificates=ca_file,
        sni=spec.validation.hostname,
        subject_alt_names=sans or [spec.validation.hostname],
    )
    targets: set[str] = set()
    for i, target in enumerate(spec.target_refs):
        if target.group != "" or target.kind != "Service":
            findings.warning(f"spec.targetRefs[{i}]", "only Services can be targeted")
            continue
        service = index.services.get((policy.namespace, target.name))
        if service is None:
            findings.warning(
                f"spec.targetRefs[{i}]", f"Service {policy.namespace}/{target.name} not found"
            )
            continue
        if failed is not None:
            continue  # fail closed: no DestinationRule that would connect without the CA
        targets.add(target.name)
        port = _port_of(service, target.section_name)
        policy_tls = (
            TrafficPolicy(
                port_level_settings=[PortTrafficPolicy(port=PortSelector(number=port), tls=tls)]
            )
            if port is not None
            else TrafficPolicy(tls=tls)
        )
        rule = DestinationRuleSpec(
            host=index.service_host(policy.namespace, target.name),
            traffic_policy=policy_tls,
            export_to=["*"],
        )
        name = safe_name(policy.name, target.name, target.section_name or "")
        out.append(
            derived(
                "DestinationRule", "networking.istio.io/v1", policy.namespace, name, rule, [policy]
            )
        )
    resolved = failed or Condition("ResolvedRefs", True, "ResolvedRefs")
    accepted = Condition("Accepted", bool(targets), "Accepted" if targets else "TargetNotFound")
    return out, [accepted, resolved], targets


def convert_backend_tls(
    resources: tuple[Resource, ...], index: ConfigIndex
) -> tuple[list[Resource], dict[ResourceKey, Mapping[str, Any]], list[Diagnostic]]:
    config_maps = {(r.namespace, r.name): r for r in resources if r.kind == "ConfigMap"}
    derived_objects: list[Resource] = []
    statuses: dict[ResourceKey, Mapping[str, Any]] = {}
    diagnostics: list[Diagnostic] = []
    for policy in resources:
        if policy.kind != "BackendTLSPolicy":
            continue
        findings = Findings(policy)
        made, conds, targets = _policy(policy, index, config_maps, findings)
        derived_objects.extend(made)
        ancestors = _ancestors(resources, policy.namespace, targets) or [
            {"group": "", "kind": "Service", "namespace": policy.namespace, "name": t.name}
            for t in policy.spec.target_refs  # type: ignore[attr-defined]
        ]
        statuses[policy.key] = {
            "ancestors": [
                {
                    "ancestorRef": ref,
                    "controllerName": index.default_controller,
                    "conditions": conditions(policy, conds),
                }
                for ref in ancestors
            ]
        }
        diagnostics.extend(findings.items)
    return derived_objects, statuses, diagnostics
