"""Helpers for end-to-end tests: meshes brought up with `pilotfish up`, as a user does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lanes import lane_cidr
from pilotfish.runtime.ports import free_port, port_in_use, port_range
from polling import poll as poll  # the one polling helper, re-exported for the kits

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples" / "bookinfo"
NETWORKING = SAMPLES / "networking"
PILOTFISH = [sys.executable, "-m", "pilotfish.cli.main"]
REVIEWS_API = "/api/v1/products/0/reviews"


def http_get(
    url: str, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class E2EMesh:
    state_dir: Path
    mode: str
    ingress_port: int
    cp_port: int
    xds_port: int
    bridge: str
    # This lane's ranges (tests/lanes.py): two lanes' meshes may be up at once.
    pod_cidr: str = lane_cidr("198.18.240.0/24")
    service_cidr: str = lane_cidr("198.19.240.0/24")
    explicit_cidr: str = lane_cidr("127.79.0.0/24")
    secure_port: int = field(default_factory=lambda: free_port())  # the CA (server TLS)
    xds_mtls_port: int = field(default_factory=lambda: free_port())
    extra_up_args: tuple[str, ...] = ()
    # Telemetry addons' ports (demo profile), when the test chose them.
    prometheus_port: int = 0
    tracing_port: int = 0
    dashboard_port: int = 0

    @property
    def ingress(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def control_plane(self) -> str:
        return f"http://127.0.0.1:{self.cp_port}"

    @property
    def token_file(self) -> Path:
        """The control plane's API token, written by ``pilotfish up``."""
        return self.state_dir / "api-token"

    def cli(
        self, *args: str, check: bool = True, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        argv = [*PILOTFISH, *args]
        if args and args[0] in ("up", "down", "status", "logs"):
            argv += ["--state-dir", str(self.state_dir)]
        if args and args[0] in ("apply", "get", "delete", "proxy-status", "proxy-config"):
            # The API's token is in the state dir, which these commands do not take.
            argv += ["--control-plane", self.control_plane, "--token-file", str(self.token_file)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def up(self, *manifests: Path, profile: str = "default") -> subprocess.CompletedProcess[str]:
        return self.cli(
            "up",
            *map(str, manifests),
            "--detach",
            "--mode",
            self.mode,
            "--profile",
            profile,
            "--ingress-port",
            str(self.ingress_port),
            "--control-plane-port",
            str(self.cp_port),
            "--xds-port",
            str(self.xds_port),
            "--bridge",
            self.bridge,
            "--pod-cidr",
            self.pod_cidr,
            "--service-cidr",
            self.service_cidr,
            "--explicit-cidr",
            self.explicit_cidr,
            "--secure-port",
            str(self.secure_port),
            "--xds-mtls-port",
            str(self.xds_mtls_port),
            *self.extra_up_args,
        )

    def pods(self) -> list[dict[str, Any]]:
        out = self.cli("status", "-o", "json").stdout
        return list(json.loads(out)["pods"])

    def pod(self, name: str) -> dict[str, Any]:
        return next(p for p in self.pods() if p["name"] == name)

    def pod_ip(self, name: str, namespace: str = "default") -> str:
        """A running pod's address, from the mesh's state file: what ``status``
        shows, without starting a CLI process for each look-up in a poll."""
        state = json.loads((self.state_dir / "state.json").read_text())
        return str(state["pods"][f"{namespace}/{name}"]["ip"])

    def reviews(self, headers: dict[str, str] | None = None) -> dict[str, Any]:
        status, body = http_get(self.ingress + REVIEWS_API, headers)
        if status != 200:
            return {"version": f"HTTP {status}"}
        return dict(json.loads(body))

    def versions(self, n: int, headers: dict[str, str] | None = None) -> Counter[str]:
        return Counter(str(self.reviews(headers).get("version")) for _ in range(n))

    def converge(self, expected: set[str], headers: dict[str, str] | None = None) -> None:
        """Wait until 20 requests in a row land only on ``expected`` versions."""

        def settled() -> bool:
            return set(self.versions(20, headers)) <= expected

        poll(settled, f"routing to settle on {expected}", deadline=30)

    def envoy_stat(self, pod: str, name: str) -> int:
        """A counter of a pod's sidecar Envoy (read from its admin API inside the pod)."""
        from pilotfish.runtime.network.transparent import netns_name

        ns = netns_name(pod, "pf-" if self.bridge == "pf0" else f"{self.bridge}-")
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "curl",
                "-s",
                "http://127.0.0.1:15000/stats?filter=" + name,
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        for line in out.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0


def host_leftovers(bridge: str) -> list[str]:
    """What a mesh on ``bridge`` could have left on the host."""
    from pilotfish.runtime.network.host import find_leftovers

    found = find_leftovers(bridge, "pf-" if bridge == "pf0" else f"{bridge}-")
    left = []
    if found.bridge:
        left.append(f"bridge {found.bridge}")
    left += [f"netns {n}" for n in found.netns]
    left += [f"veth {v}" for v in found.host_veths]
    left += [f"rule {' '.join(r)}" for r in found.iptables_rules]
    left += [f"file {f}" for f in found.files]
    return left


def processes_mentioning(text: str, within: Path | None = None) -> list[str]:
    """Processes whose command line contains ``text``.

    With ``within`` (a mesh's state dir), only that mesh's: the command line names
    the directory, or the process has a file open in it (pods' and gateways' output
    goes to logs there) or works in it. Another lane's mesh runs the same programs,
    and its processes are not this mesh's leftovers.
    """
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmd and (within is None or _uses_dir(pid, cmd, str(within))):
            out.append(f"{pid}: {cmd}")
    return out


def _uses_dir(pid: str, cmd: str, root: str) -> bool:
    if root in cmd:
        return True
    links = [f"/proc/{pid}/cwd"]
    try:
        links += [f"/proc/{pid}/fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return False  # gone (or not ours to read: we run as root)
    for link in links:
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target == root or target.startswith(root + "/"):
            return True
    return False


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("end-to-end meshes need root (network namespaces, iptables); CI runs as root")
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make test installs it when run as root)")


def down_leaves_nothing(mesh: E2EMesh, bridge: str) -> None:
    """``down``, then: nothing of the mesh is left on the host (addons' files included)."""
    mesh.cli("down", check=False)
    assert host_leftovers(bridge) == []
    assert processes_mentioning(str(mesh.state_dir)) == []
    assert processes_mentioning("pilotfish.samples.bookinfo", mesh.state_dir) == []
    addons = mesh.state_dir / "addons"
    assert not addons.exists() or not any(addons.iterdir())


def free_port_block(count: int, step: int, avoid: Collection[int] = ()) -> int:
    """A free port ``p`` with ``p + step * i`` also free and in this lane's port range
    for every ``i < count``, none of them in ``avoid``: replicas listen at fixed
    offsets of replica 1's ports, which ``free_port`` alone could place on a port
    another lane holds."""
    top = port_range()[1]
    for _ in range(200):
        port = free_port()
        shifted = [port + step * i for i in range(1, count)]
        if port in avoid or any(p in avoid for p in shifted):
            continue
        if all(p < top and not port_in_use(p) for p in shifted):
            return port
    raise OSError(f"no free block of {count} ports {step} apart")


class PortPicker:
    """The ports of one mesh, none equal to another: each is free when picked, but
    nothing binds it until the mesh starts, so two picks (or a replica's offset of
    one, ``block``) could otherwise land on the same port."""

    def __init__(self) -> None:
        self._taken: set[int] = set()

    def single(self) -> int:
        for _ in range(200):
            port = free_port()
            if port not in self._taken:
                self._taken.add(port)
                return port
        raise OSError("no free port unlike the ones already picked")

    def block(self, count: int, step: int) -> int:
        """Replica 1's port of ``count`` replicas ``step`` apart (``free_port_block``)."""
        base = free_port_block(count, step, avoid=self._taken)
        self._taken.update(base + step * i for i in range(count))
        return base
