from __future__ import annotations

import pytest
from api_testing import Loader

from pilotfish.api.security.authorization_policy import AuthorizationPolicySpec
from pilotfish.api.validation.references import check_references

HEAD = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ap, namespace: foo}
spec:
"""


def _indent(spec: str) -> str:
    return "\n".join("  " + line for line in spec.strip("\n").splitlines()) + "\n"


def _problems(load: Loader, spec: str) -> dict[str, tuple[bool, str]]:
    result = load(HEAD + _indent(spec))
    return {d.field: (d.is_error, d.message) for d in result.diagnostics}


def test_full_policy_parses_with_snake_case_names(load: Loader) -> None:
    result = load(
        HEAD
        + _indent(
            """
selector: {matchLabels: {app: httpbin}}
rules:
- from:
  - source:
      principals: [cluster.local/ns/default/sa/sleep]
      notPrincipals: ["*/sa/admin"]
      requestPrincipals: ["issuer/*"]
      notRequestPrincipals: [bad/subject]
      namespaces: [test]
      notNamespaces: [prod]
      ipBlocks: [10.0.0.0/8, 1.2.3.4]
      notIpBlocks: ["::1"]
      remoteIpBlocks: [192.168.0.0/16]
      notRemoteIpBlocks: [192.168.1.1]
  to:
  - operation:
      hosts: ["*.example.com"]
      notHosts: [admin.example.com]
      ports: ["8080", 9090]
      notPorts: ["22"]
      methods: [GET, POST]
      notMethods: [DELETE]
      paths: ["/info*"]
      notPaths: [/admin]
  when:
  - key: request.auth.claims[iss]
    values: ["https://accounts.google.com"]
  - key: destination.port
    notValues: ["15000"]
"""
        )
    )
    assert result.diagnostics == ()
    spec = result.resources[0].spec
    assert isinstance(spec, AuthorizationPolicySpec)
    assert spec.action == "ALLOW"
    rule = spec.rules[0]
    source = rule.from_[0].source
    assert source is not None
    assert source.not_request_principals == ["bad/subject"]
    assert source.not_remote_ip_blocks == ["192.168.1.1"]
    op = rule.to[0].operation
    assert op is not None and op.ports == ["8080", "9090"] and op.not_paths == ["/admin"]
    assert rule.when[1].not_values == ["15000"]


def test_empty_spec_is_allow_nothing(load: Loader) -> None:
    result = load(HEAD + "  {}\n")
    assert result.diagnostics == ()
    spec = result.resources[0].spec
    assert isinstance(spec, AuthorizationPolicySpec)
    assert spec.action == "ALLOW" and spec.rules == []


def test_deny_with_an_empty_rule_is_fine(load: Loader) -> None:
    assert _problems(load, "action: DENY\nrules: [{}]") == {}


def test_audit_without_rules_is_accepted(load: Loader) -> None:
    assert _problems(load, "action: AUDIT") == {}


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ("action: DENY", "spec.rules", "never be triggered"),
        ("action: block", "spec.action", "'ALLOW', 'DENY', 'AUDIT' or 'CUSTOM'"),
        (
            "action: CUSTOM\nprovider: {name: ext-authz}\nrules: [{}]",
            "spec.action",
            "not supported",
        ),
        ("action: CUSTOM\nrules: [{}]", "spec.provider.name", "must not be empty"),
        ("provider: {name: ext-authz}", "spec.provider", "must not be set with action ALLOW"),
        ("rules: [{from: [{}]}]", "spec.rules[0].from[0].source", "must be set"),
        ("rules: [{from: [{source: {}}]}]", "spec.rules[0].from[0].source", "must not be empty"),
        ("rules: [{to: [{}]}]", "spec.rules[0].to[0].operation", "must be set"),
        ("rules: [{to: [{operation: {}}]}]", "spec.rules[0].to[0].operation", "must not be empty"),
        (
            "rules: [{from: [{source: {principals: ['']}}]}]",
            "spec.rules[0].from[0].source.principals[0]",
            "must not be empty",
        ),
        (
            "rules: [{from: [{source: {principals: ['a*b']}}]}]",
            "spec.rules[0].from[0].source.principals[0]",
            "only allowed alone, as a prefix",
        ),
        (
            "rules: [{from: [{source: {namespaces: ['*test*']}}]}]",
            "spec.rules[0].from[0].source.namespaces[0]",
            "only allowed alone",
        ),
        (
            "rules: [{from: [{source: {ipBlocks: ['10.0.0.0/33']}}]}]",
            "spec.rules[0].from[0].source.ipBlocks[0]",
            "not a valid IP address or CIDR",
        ),
        (
            "rules: [{from: [{source: {notRemoteIpBlocks: [localhost]}}]}]",
            "spec.rules[0].from[0].source.notRemoteIpBlocks[0]",
            "not a valid IP",
        ),
        (
            "rules: [{to: [{operation: {ports: ['0']}}]}]",
            "spec.rules[0].to[0].operation.ports[0]",
            "out of range",
        ),
        (
            "rules: [{to: [{operation: {notPorts: [http]}}]}]",
            "spec.rules[0].to[0].operation.notPorts[0]",
            "not a number",
        ),
        (
            "rules: [{to: [{operation: {paths: ['/a/*/b']}}]}]",
            "spec.rules[0].to[0].operation.paths[0]",
            "only allowed alone",
        ),
        ("rules: [{when: [{values: [a]}]}]", "spec.rules[0].when[0].key", "must not be empty"),
        (
            "rules: [{when: [{key: source.ip}]}]",
            "spec.rules[0].when[0]",
            "at least one of values or notValues",
        ),
        (
            "rules: [{when: [{key: request.colour, values: [red]}]}]",
            "spec.rules[0].when[0].key",
            "unknown attribute 'request.colour'",
        ),
        (
            "rules: [{when: [{key: 'request.headers[]', values: [x]}]}]",
            "spec.rules[0].when[0].key",
            "should have the form request.headers[name]",
        ),
        (
            "rules: [{when: [{key: 'request.auth.claims[iss', values: [x]}]}]",
            "spec.rules[0].when[0].key",
            "should have the form",
        ),
        (
            "rules: [{when: [{key: destination.labels, values: [x]}]}]",
            "spec.rules[0].when[0].key",
            "not supported",
        ),
        (
            "rules: [{when: [{key: remote.ip, values: [not-an-ip]}]}]",
            "spec.rules[0].when[0].values[0]",
            "not a valid IP",
        ),
        (
            "rules: [{when: [{key: destination.port, notValues: ['99999']}]}]",
            "spec.rules[0].when[0].notValues[0]",
            "out of range",
        ),
        (
            "selector: {matchLabels: {app: a}}\ntargetRefs: [{kind: Service, name: a}]",
            "spec.targetRefs",
            "only one of selector, targetRefs",
        ),
        (
            "targetRef: {kind: Deployment, name: a}",
            "spec.targetRef.kind",
            "must be Service or Gateway",
        ),
        (
            "targetRefs: [{kind: Service, name: a, namespace: other}]",
            "spec.targetRefs[0].namespace",
            "own namespace",
        ),
        ("rules: [{form: []}]", "spec.rules[0].form", "unknown field"),
    ],
)
def test_errors(load: Loader, spec: str, field: str, fragment: str) -> None:
    problems = _problems(load, spec)
    assert field in problems, problems
    is_error, message = problems[field]
    assert is_error and fragment in message, message


@pytest.mark.parametrize("method", ["get", "FETCH"])
def test_methods_not_upper_case_http_warn(load: Loader, method: str) -> None:
    problems = _problems(load, f"rules: [{{to: [{{operation: {{methods: [{method}]}}}}]}}]")
    field = "spec.rules[0].to[0].operation.methods[0]"
    assert set(problems) == {field}
    is_error, message = problems[field]
    assert not is_error and "upper-case HTTP method" in message


def test_envoy_filter_keys_and_wildcard_values_are_accepted(load: Loader) -> None:
    spec = """
rules:
- when:
  - {key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: ["[update]"]}
  - {key: "request.headers[User-Agent]", values: ["*curl*"]}
  - {key: connection.sni, values: ["*.example.com"]}
  - {key: request.auth.audiences, values: ["*"]}
"""
    problems = _problems(load, spec)
    # '*curl*' is not one of Istio's forms; everything else is fine.
    assert set(problems) == {"spec.rules[0].when[1].values[0]"}


def test_target_refs_that_do_not_exist_warn(load: Loader) -> None:
    policy = load(
        HEAD + _indent("targetRefs: [{kind: Service, name: ghost}, {kind: Service, name: web}]")
    )
    service = load(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: foo}\n"
        "spec: {ports: [{port: 80}]}\n"
    )
    found = check_references([*policy.resources, *service.resources])
    assert [(d.field, d.is_error, d.message) for d in found] == [
        ("spec.targetRefs[0].name", False, "Service foo/ghost does not exist")
    ]
