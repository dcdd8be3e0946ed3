"""The security end-to-end tests' mesh, policy bookkeeping and how to wait for policies.

Theory of operation. ``security_mesh`` runs one transparent mesh (bridge
``pfe2s``, its own address ranges, ``--cert-ttl 20s``) with Bookinfo, the
ingress gateway and ``securitykit.extras_manifest``. ``Policies`` applies
manifests for one test and deletes them afterwards. ``settle`` waits until an
expected observation holds *and* the server sidecars have finished draining
(see ``drained``), then checks it stays that way.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2ekit import (
    NETWORKING,
    SAMPLES,
    E2EMesh,
    free_port,
    host_leftovers,
    poll,
    processes_mentioning,
)
from securitykit import ECHO_PORT, PodCaller, Reply, extras_manifest, host_request

from lanes import lane_bridge, lane_cidr

__all__ = [
    "BRIDGE",
    "DENIED",
    "SERVERS",
    "Policies",
    "SecMesh",
    "drained",
    "outcome",
    "scoped_policies",
    "security_mesh",
    "settle",
]

BRIDGE = lane_bridge("pfe2s")
DENIED = (403, "RBAC: access denied")
EXTRA_PODS = ("echo-v1-0", "sleep-0", "outsider-0")
# The server pods whose inbound side the policies of these tests change.
SERVERS = ("echo-v1-0", "productpage-v1-0")


@dataclass
class SecMesh:
    """The running mesh, where echo is published, and the two in-mesh callers.

    ``ips`` maps pod names to their addresses (reachable from the host)."""

    mesh: E2EMesh
    echo_gateway_port: int
    workdir: Path
    sleep: PodCaller
    outsider: PodCaller
    ips: dict[str, str] = field(default_factory=dict)

    @property
    def echo_via_gateway(self) -> str:
        return f"http://127.0.0.1:{self.echo_gateway_port}"

    def pod_url(self, pod: str, port: int, path: str = "/") -> str:
        return f"http://{self.ips[pod]}:{port}{path}"

    def identity(self, pod: str) -> dict[str, Any]:
        reply = host_request(self.pod_url(pod, 15021, "/identity"))
        assert reply.status == 200, reply
        return reply.json()


def security_mesh(tmp: Path) -> Iterator[SecMesh]:
    """Bring the module's mesh up under ``tmp``; yield it; bring it down and check that
    nothing is left on the host (a generator for a module-scoped fixture)."""
    # A policy change drains the server sidecars' old filter chains; 1 s
    # (Istio's defaultConfig.drainDuration) keeps each test's settling short.
    mesh_config = tmp / "mesh.yaml"
    mesh_config.write_text("defaultConfig:\n  drainDuration: 1s\n")
    mesh = E2EMesh(
        tmp / "state",
        "transparent",
        free_port(),
        free_port(),
        free_port(),
        BRIDGE,
        pod_cidr=lane_cidr("198.18.241.0/24"),
        service_cidr=lane_cidr("198.19.241.0/24"),
        extra_up_args=("--cert-ttl", "20s", "--mesh-config", str(mesh_config)),
    )
    try:
        mesh.up(SAMPLES / "bookinfo.yaml", NETWORKING / "bookinfo-gateway.yaml")
        gateway_port = free_port()
        extras = tmp / "extras.yaml"
        extras.write_text(extras_manifest(gateway_port))
        mesh.cli("apply", "-f", str(extras))

        def extras_ready() -> dict[str, str] | None:
            pods = {p["name"]: p for p in mesh.pods()}
            if all(pods.get(n, {}).get("ready") is True for n in EXTRA_PODS):
                return {n: str(p["ip"]) for n, p in pods.items() if not p.get("gateway")}
            return None

        ips = poll(extras_ready, "echo, sleep and outsider pods to be ready", deadline=90)
        sec = SecMesh(
            mesh,
            gateway_port,
            tmp,
            PodCaller(mesh, "default", "sleep-0"),
            PodCaller(mesh, "outside", "outsider-0"),
            ips,
        )
        poll(
            lambda: host_request(sec.echo_via_gateway + "/").status == 200,
            "echo through its gateway",
        )
        yield sec
    finally:
        mesh.cli("down", check=False)
        assert host_leftovers(BRIDGE) == []
        assert processes_mentioning(str(mesh.state_dir)) == []


class Policies:
    """Applies manifests for one test and deletes them (in reverse) afterwards."""

    def __init__(self, sec: SecMesh, folder: Path) -> None:
        self._sec = sec
        self._folder = folder
        self._files: list[Path] = []

    def apply(self, name: str, text: str) -> Path:
        path = self._folder / f"{name}.yaml"
        path.write_text(textwrap.dedent(text))
        self._sec.mesh.cli("apply", "-f", str(path))
        if path not in self._files:
            self._files.append(path)
        return path

    def delete(self, path: Path) -> None:
        self._sec.mesh.cli("delete", "-f", str(path))
        self._files.remove(path)

    def delete_all(self) -> None:
        for path in reversed(self._files):
            self._sec.mesh.cli("delete", "-f", str(path), check=False)
        self._files.clear()


def scoped_policies(sec: SecMesh, folder: Path) -> Iterator[Policies]:
    """``Policies`` for one test; afterwards everything is deleted and the mesh is
    back to no policy (a generator for a function-scoped fixture)."""
    applied = Policies(sec, folder)
    try:
        yield applied
    finally:
        applied.delete_all()

        # Back to the default before the next test: plaintext and mesh calls pass.
        def baseline() -> bool:
            return (
                host_request(sec.pod_url("echo-v1-0", ECHO_PORT)).status == 200
                and host_request(sec.pod_url("productpage-v1-0", 9080, "/health")).status == 200
                and host_request(sec.echo_via_gateway + "/").status == 200
                and drained(sec, SERVERS)
            )

        poll(baseline, "the mesh to be back to no policy", deadline=30)


def drained(sec: SecMesh, pods: tuple[str, ...]) -> bool:
    """Whether the sidecars of ``pods`` have no listener or filter chain draining.

    A policy change rewrites a server sidecar's inbound filter chains. Envoy
    keeps serving connections already open on the old chains (client sidecars
    pool them) with the old configuration until the drain time ends (1 s here,
    the mesh config's ``drainDuration``):
    Istio behaves the same. A policy is only settled once that is over.
    """
    return all(
        sec.mesh.envoy_stat(pod, "listener_manager.total_filter_chains_draining") == 0
        and sec.mesh.envoy_stat(pod, "listener_manager.total_listeners_draining") == 0
        for pod in pods
    )


def settle(
    sec: SecMesh,
    check: Callable[[], Any],
    expected: Any,
    what: str,
    pods: tuple[str, ...] = ("echo-v1-0",),
    deadline: float = 40,
) -> None:
    """Poll until ``check()`` equals ``expected`` with nothing draining on ``pods``
    (configuration propagates asynchronously), then require it twice more: a
    policy must hold, not flicker."""
    poll(lambda: check() == expected and drained(sec, pods), what, deadline)
    for _ in range(2):
        got = check()
        assert got == expected, f"{what}: flipped to {got!r}"


def outcome(reply: Reply) -> tuple[int | None, str] | int | None:
    """A reply as a matrix cell: the status, or (403, body) for denials."""
    if reply.status == 403:
        return (403, reply.body.strip())
    return reply.status
