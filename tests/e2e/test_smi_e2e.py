"""SMI on a mesh brought up with ``pilotfish up``: a TrafficSplit splits real
traffic between two versions, and a TrafficTarget lets one caller in and keeps
another out, by their mTLS identities.

The security tests' mesh (``securitymesh.security_mesh``: transparent, root) plus
a second echo version and one Service per version. Calls are made from the
``sleep`` pod (service account ``sleep``) and the ``outsider`` pod (namespace
``outside``), through their sidecars. The SMI objects are applied through the
API like any configuration and converted to a VirtualService and
AuthorizationPolicies (``translate/smi.py``); each test deletes what it applied.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ekit import poll, require_root
from securitykit import ECHO_PORT, PodCaller
from securitymesh import DENIED, Policies, SecMesh, outcome, scoped_policies, security_mesh, settle

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.timeout(600)]

# Qualified: the outsider pod is in another namespace.
ECHO = f"http://echo.default:{ECHO_PORT}"
ECHO_PODS = ("echo-v1-0", "echo-v2-0")

VERSIONS = f"""\
apiVersion: pilotfish.io/v1alpha1
kind: Workload
metadata: {{name: echo-v2, namespace: default, labels: {{app: echo, version: v2}}}}
spec:
  serviceAccount: echo
  command: ["python", "-m", "pilotfish.samples.echo", "--service", "echo",
            "--version", "v2", "--port", "{ECHO_PORT}"]
  ports:
  - {{name: http, containerPort: {ECHO_PORT}}}
  readinessProbe:
    httpGet: {{path: /health, port: http}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo-v1, namespace: default}}
spec:
  selector: {{app: echo, version: v1}}
  ports: [{{name: http, port: {ECHO_PORT}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo-v2, namespace: default}}
spec:
  selector: {{app: echo, version: v2}}
  ports: [{{name: http, port: {ECHO_PORT}}}]
"""


@pytest.fixture(scope="module")
def sec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecMesh]:
    require_root()
    tmp = tmp_path_factory.mktemp("smi")
    running = security_mesh(tmp)
    mesh = next(running)
    try:
        versions = tmp / "versions.yaml"
        versions.write_text(VERSIONS)
        mesh.mesh.cli("apply", "-f", str(versions))

        def ready() -> bool:
            pods = {p["name"]: p for p in mesh.mesh.pods()}
            return pods.get("echo-v2-0", {}).get("ready") is True

        poll(ready, "echo-v2 to be ready", deadline=90)
        yield mesh
    finally:
        running.close()  # brings the mesh down and checks nothing is left


@pytest.fixture
def policies(sec: SecMesh, tmp_path: Path) -> Iterator[Policies]:
    yield from scoped_policies(sec, tmp_path)


def _versions(caller: PodCaller, n: int) -> Counter[str]:
    replies = caller.call(*({"url": f"{ECHO}/split"} for _ in range(n)))
    assert all(r.status == 200 for r in replies), replies
    return Counter(str(r.json()["version"]) for r in replies)


def _split(v1: int, v2: int) -> str:
    return f"""\
        apiVersion: split.smi-spec.io/v1alpha4
        kind: TrafficSplit
        metadata: {{name: echo-rollout, namespace: default}}
        spec:
          service: echo
          backends:
          - {{service: echo-v1, weight: {v1}}}
          - {{service: echo-v2, weight: {v2}}}
        """


def test_a_traffic_split_moves_traffic_between_versions(sec: SecMesh, policies: Policies) -> None:
    # Without a split, the echo Service balances over both versions.
    poll(lambda: set(_versions(sec.sleep, 20)) == {"v1", "v2"}, "both versions", deadline=30)
    # All of it to v2 (a weight-0 backend gets nothing) ...
    policies.apply("split", _split(0, 5))
    settle(sec, lambda: _versions(sec.sleep, 20), Counter({"v2": 20}), "all to v2", ECHO_PODS)
    # ... then 3:1: SMI weights are relative, so v2 gets about a quarter.
    policies.apply("split", _split(300, 100))
    poll(lambda: "v1" in _versions(sec.sleep, 10), "v1 back in the split", deadline=30)
    counts = _versions(sec.sleep, 200)
    # Binomial(200, 0.25): mean 50, sd 6.1; 25..80 is beyond 4 sd on either side.
    assert 25 <= counts["v2"] <= 80, counts
    assert counts["v1"] + counts["v2"] == 200


TARGET = """\
    apiVersion: specs.smi-spec.io/v1alpha4
    kind: HTTPRouteGroup
    metadata: {name: echo-routes, namespace: default}
    spec:
      matches:
      - name: reads
        pathRegex: /allowed
        methods: [GET]
    ---
    apiVersion: access.smi-spec.io/v1alpha3
    kind: TrafficTarget
    metadata: {name: echo-access, namespace: default}
    spec:
      destination: {kind: ServiceAccount, name: echo, namespace: default}
      rules:
      - kind: HTTPRouteGroup
        name: echo-routes
        matches: [reads]
      sources:
      - {kind: ServiceAccount, name: sleep, namespace: default}
    """


def test_a_traffic_target_allows_one_identity_and_denies_the_rest(
    sec: SecMesh, policies: Policies
) -> None:
    def matrix() -> dict[str, object]:
        return {
            "sleep GET /allowed": outcome(sec.sleep.get(f"{ECHO}/allowed/x")),
            "sleep POST /allowed": outcome(sec.sleep.get(f"{ECHO}/allowed/x", method="POST")),
            "sleep GET /other": outcome(sec.sleep.get(f"{ECHO}/other")),
            "outsider GET /allowed": outcome(sec.outsider.get(f"{ECHO}/allowed/x")),
        }

    assert set(matrix().values()) == {200}
    policies.apply("target", TARGET)
    expected = {
        "sleep GET /allowed": 200,
        "sleep POST /allowed": DENIED,
        "sleep GET /other": DENIED,
        "outsider GET /allowed": DENIED,
    }
    settle(sec, matrix, expected, "the TrafficTarget enforced", ECHO_PODS)
    # Both versions run as the destination service account, so both are protected:
    # requests balanced over them are all denied to the outsider and allowed to sleep.
    many = [{"url": f"{ECHO}/allowed/y"} for _ in range(10)]
    assert {outcome(r) for r in sec.outsider.call(*many)} == {DENIED}
    allowed = sec.sleep.call(*many)
    assert {r.status for r in allowed} == {200}
    assert {r.json()["version"] for r in allowed} == {"v1", "v2"}
