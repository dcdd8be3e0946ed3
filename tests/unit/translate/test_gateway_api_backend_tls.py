"""BackendTLSPolicy conversion: CA refs, conflicts between policies, sections, status."""

from __future__ import annotations

import json
from typing import Any

from pilotfish.api.loader import load_text
from pilotfish.api.networking.destination_rule import DestinationRuleSpec
from pilotfish.api.resource import ResourceKey
from pilotfish.translate.conversion import Conversion, ConversionContext
from pilotfish.translate.gateway_api import convert_gateway_api
from pki import TestCa

CA = TestCa().ca_pem
BASE = f"""
apiVersion: v1
kind: Service
metadata: {{name: tls, namespace: infra}}
spec:
  selector: {{app: tls}}
  ports: [{{name: https-1, port: 443}}, {{name: https-2, port: 8443}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: ca, namespace: infra}}
data: {{ca.crt: {json.dumps(CA)}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: empty, namespace: infra}}
data: {{ca.crt: ""}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: istio
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: infra}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: tls, port: 443}}]}}]
"""


def _policy(
    name: str, host: str, section: str = "", ca: str = "ca", kind: str = "ConfigMap"
) -> str:
    target = '{group: "", kind: Service, name: tls' + (
        f", sectionName: {section}" if section else ""
    )
    group = '""' if kind == "ConfigMap" else "invalid.io"
    return f"""
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}, namespace: infra}}
spec:
  targetRefs: [{target}}}]
  validation:
    caCertificateRefs: [{{group: {group}, kind: {kind}, name: {ca}}}]
    hostname: {host}
"""


def _convert(*policies: str) -> Conversion:
    loaded = load_text(BASE + "".join(policies), "t.yaml")
    assert loaded.ok, [d.format() for d in loaded.diagnostics]
    return convert_gateway_api(loaded.resources, ConversionContext())


def _rule(conv: Conversion) -> DestinationRuleSpec:
    (rule,) = [r for r in conv.resources if r.kind == "DestinationRule"]
    assert isinstance(rule.spec, DestinationRuleSpec)
    return rule.spec


def _conditions(conv: Conversion, name: str) -> dict[str, tuple[str, str]]:
    status: Any = conv.statuses[ResourceKey("BackendTLSPolicy", "infra", name)]
    (ancestor,) = status["ancestors"]
    assert ancestor["ancestorRef"]["name"] == "gw"  # the Gateway, even when it fails
    return {c["type"]: (c["status"], c["reason"]) for c in ancestor["conditions"]}


def test_the_older_of_two_whole_service_policies_applies() -> None:
    conv = _convert(_policy("p-2", "abc.example.com"), _policy("p-1", "other.example.com"))
    rule = _rule(conv)
    assert rule.traffic_policy is not None and rule.traffic_policy.tls is not None
    assert rule.traffic_policy.tls.sni == "other.example.com"
    assert _conditions(conv, "p-1")["Accepted"] == ("True", "Accepted")
    assert _conditions(conv, "p-2")["Accepted"] == ("False", "Conflicted")


def test_a_section_policy_and_a_whole_service_policy_apply_side_by_side() -> None:
    conv = _convert(
        _policy("sectioned", "other.example.com", section="https-1"),
        _policy("whole", "abc.example.com"),
        _policy("z-later", "late.example.com", section="https-1"),
    )
    tp = _rule(conv).traffic_policy
    assert tp is not None and tp.tls is not None and tp.tls.sni == "abc.example.com"
    assert [(p.port.number, p.tls.sni) for p in tp.port_level_settings] == [  # type: ignore[union-attr]
        (443, "other.example.com")
    ]
    assert _conditions(conv, "sectioned")["Accepted"] == ("True", "Accepted")
    assert _conditions(conv, "whole")["Accepted"] == ("True", "Accepted")
    # No creationTimestamps: the first by name is the older.
    assert _conditions(conv, "z-later")["Accepted"] == ("False", "Conflicted")


def test_no_valid_ca_makes_no_rule_and_says_why() -> None:
    conv = _convert(
        _policy("missing", "a.example.com", ca="nonexistent"),
        _policy("empty", "a.example.com", section="https-1", ca="empty"),
        _policy("kind", "a.example.com", section="https-2", kind="InvalidKind"),
    )
    assert [r for r in conv.resources if r.kind == "DestinationRule"] == []
    for name, reason in (
        ("missing", "InvalidCACertificateRef"),
        ("empty", "InvalidCACertificateRef"),
        ("kind", "InvalidKind"),
    ):
        conds = _conditions(conv, name)
        assert conds["Accepted"] == ("False", "NoValidCACertificate"), name
        assert conds["ResolvedRefs"] == ("False", reason), name


def test_an_invalid_policy_does_not_win_a_conflict() -> None:
    conv = _convert(
        _policy("a-bad", "a.example.com", ca="empty"), _policy("b-good", "b.example.com")
    )
    tp = _rule(conv).traffic_policy
    assert tp is not None and tp.tls is not None and tp.tls.sni == "b.example.com"
    assert _conditions(conv, "b-good")["Accepted"] == ("True", "Accepted")
