"""Transparent mode: each pod is a network namespace on the mesh bridge (needs root).

Theory of operation:

- ``setup()`` creates a Linux bridge (``pf0``) holding the first address of
  the pod CIDR; it is every pod's default gateway and the host's way into the
  pods. The only other host change is one ``FORWARD ... ACCEPT`` rule for
  traffic between pods, added only when ``br_netfilter`` (or a restrictive
  FORWARD policy) could otherwise drop bridged packets. No host sysctl, no NAT.
- ``create_pod()`` makes netns ``pf-<pod>``, a veth pair (host side
  ``pfv<hash>`` on the bridge, pod side ``eth0``), an address from ``Ipam``,
  a default route via the bridge, the sidecar capture rules
  (``capture.capture_rules``, applied atomically inside the pod's netns with
  ``iptables-restore``), ``ip_unprivileged_port_start=0`` inside the pod (its
  apps run unprivileged), and ``/etc/netns/<netns>/{hosts,resolv.conf}``.
- Everything created is recorded in a ``HostResources`` (``resources()``)
  before it is created, so a failure half way or a crash can be cleaned up
  by ``teardown()`` or ``host.cleanup_leftovers``.
- Commands run through an injectable ``Runner``; their errors name the
  command and its stderr. Steps check for existing objects first, so calling
  ``setup``/``create_pod`` again, or after a crash, converges.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..ipam import Ipam
from .base import CaptureConfig, HostResources, Mode, PodAddress, ServiceName
from .capture import capture_rules, restore_script
from .commands import CommandError, Runner, run_command
from .host import IFNAMSIZ, RULE_COMMENT, cleanup_leftovers, link_exists, list_netns, veth_name
from .names import NETNS_ETC, hosts_file, resolv_conf, write_in_place

__all__ = ["TransparentNetwork", "netns_name", "pod_mac", "veth_name"]

_NETNS_MAX = 63
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_UNPRIVILEGED_PORTS = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
_BR_NF_CALL_IPTABLES = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


def pod_mac(ip: str) -> str:
    """The MAC address of the pod holding IPv4 ``ip``: locally administered
    (``02:``), then a fixed byte and the address's four bytes."""
    octets = [int(part) for part in ip.split(".")]
    return "02:50:" + ":".join(f"{o:02x}" for o in octets)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def netns_name(pod: str, prefix: str = "pf-") -> str:
    """The netns for ``pod``: ``<prefix><pod>``, made safe and unique.

    Characters other than letters, digits, ``_ . -`` become ``-``; when that
    changed the name or it is too long, a hash of the original pod name is
    appended so two pods never share a namespace.
    """
    safe = _UNSAFE.sub("-", pod)
    name = prefix + safe
    if safe != pod or len(name) > _NETNS_MAX or safe in ("", ".", ".."):
        name = f"{prefix}{safe[: _NETNS_MAX - len(prefix) - 9]}-{_short_hash(pod)}"
    return name


class TransparentNetwork:
    """Pods as network namespaces on a bridge, with Istio-style capture.

    ``bridge`` (<= 15 chars) and ``pod_cidr`` are configurable so a test or a
    second mesh never clashes with a running one; ``netns_prefix`` and
    ``veth_prefix`` name what this network creates (``find_leftovers`` uses
    the same names). ``ipam`` restores persisted allocations.
    """

    mode: Mode = "transparent"

    def __init__(
        self,
        bridge: str = "pf0",
        pod_cidr: str = "198.18.0.0/16",
        runner: Runner = run_command,
        *,
        netns_prefix: str = "pf-",
        veth_prefix: str = "pfv",
        cluster_domain: str = "cluster.local",
        ipam: Ipam | None = None,
        etc_netns: Path = NETNS_ETC,
    ) -> None:
        if not bridge or len(bridge) > IFNAMSIZ or _UNSAFE.search(bridge):
            raise ValueError(f"invalid bridge name {bridge!r} (letters/digits, <= {IFNAMSIZ})")
        veth_name("", veth_prefix)  # validates the prefix length
        self.bridge = bridge
        self.netns_prefix = netns_prefix
        self.veth_prefix = veth_prefix
        self.cluster_domain = cluster_domain
        fresh = Ipam(pod_cidr, reserved=1)
        if ipam is not None and ipam.cidr != fresh.cidr:
            raise ValueError(f"restored IPAM range {ipam.cidr} differs from pod CIDR {fresh.cidr}")
        self.ipam = ipam if ipam is not None else fresh
        # The bridge holds the first address; Ipam never hands it to a pod.
        self.gateway = self.ipam.reserved_address(0)
        self._run = runner
        self._etc_netns = etc_netns
        self._pods: dict[str, PodAddress] = {}
        self._namespaces: dict[str, str | None] = {}
        self._names: tuple[ServiceName, ...] = ()
        self._res = HostResources()

    # -- shared pieces -------------------------------------------------------

    def setup(self) -> None:
        """Create the bridge (gateway address, up) and, if needed, the FORWARD rule."""
        self._res.bridge = self.bridge
        if not link_exists(self.bridge, self._run):
            self._ignore_exists(["ip", "link", "add", "name", self.bridge, "type", "bridge"])
        elif self._link_kind(self.bridge) != "bridge":
            raise RuntimeError(f"interface {self.bridge} exists and is not a bridge")
        cidr = f"{self.gateway}/{self.ipam.prefixlen}"
        self._run(["ip", "addr", "replace", cidr, "dev", self.bridge])
        self._run(["ip", "link", "set", self.bridge, "up"])
        if self._bridged_traffic_filtered():
            self._ensure_forward_rule()

    def _link_kind(self, name: str) -> str | None:
        links: list[dict[str, Any]] = _loads(self._run(["ip", "-j", "-d", "link", "show", name]))
        info = links[0].get("linkinfo", {}) if links else {}
        kind = info.get("info_kind")
        return str(kind) if kind is not None else None

    def _bridged_traffic_filtered(self) -> bool:
        """Whether host iptables could drop traffic crossing the bridge."""
        try:
            if _BR_NF_CALL_IPTABLES.read_text().strip() == "1":
                return True  # br_netfilter sends bridged frames through FORWARD
        except OSError:
            pass  # br_netfilter not loaded
        if not shutil.which("iptables"):
            return False
        # The first line of ``-S FORWARD`` is the policy, e.g. "-P FORWARD DROP".
        forward = self._run(["iptables", "-w", "-S", "FORWARD"]).splitlines()
        return forward[:1] != ["-P FORWARD ACCEPT"]

    def _ensure_forward_rule(self) -> None:
        spec = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        spec += ["-m", "comment", "--comment", RULE_COMMENT]
        delete = ["iptables", "-w", "-t", "filter", "-D", *spec]
        if delete not in self._res.iptables_rules:
            self._res.iptables_rules.append(delete)
        try:
            self._run(["iptables", "-w", "-t", "filter", "-C", *spec])
        except CommandError:
            self._run(["iptables", "-w", "-t", "filter", "-I", *spec])

    # -- pods ----------------------------------------------------------------

    def create_pod(
        self, pod: str, capture: CaptureConfig | None, *, namespace: str | None = None
    ) -> PodAddress:
        """Create (or re-create) the pod's netns, veth, address, route, capture and names.

        ``namespace`` (optional, also settable later by ``update_names``) is
        the pod's mesh namespace, used for its DNS search list and short names.
        On failure the pod's partial state is removed and the error re-raised.
        """
        if self._res.bridge is None:
            raise RuntimeError("TransparentNetwork.setup() must run before create_pod()")
        ns = netns_name(pod, self.netns_prefix)
        other = next((p for p, a in self._pods.items() if a.netns == ns and p != pod), None)
        if other is not None:
            raise ValueError(f"pods {other!r} and {pod!r} map to the same netns {ns}")
        veth = veth_name(ns, self.veth_prefix)
        ip = self.ipam.allocate(pod)
        _append_once(self._res.netns, ns)
        _append_once(self._res.host_veths, veth)
        _append_once(self._res.files, str(self._etc_netns / ns))
        if namespace is not None or pod not in self._namespaces:
            self._namespaces[pod] = namespace
        try:
            self._create_pod_network(ns, veth, ip, capture)
            self._write_names(pod, ns)
        except BaseException:
            self.delete_pod(pod)
            raise
        address = PodAddress(pod=pod, ip=ip, netns=ns, exec_prefix=("ip", "netns", "exec", ns))
        self._pods[pod] = address
        return address

    def _create_pod_network(
        self, ns: str, veth: str, ip: str, capture: CaptureConfig | None
    ) -> None:
        if ns not in list_netns(self._run):
            self._ignore_exists(["ip", "netns", "add", ns])
        if link_exists(veth, self._run):
            # A stale pair from an earlier run: start from a clean pair.
            self._run(["ip", "link", "del", veth])
        # The pod's MAC is derived from its address: an address freed by a pod and
        # given to the next one keeps its MAC, so neighbours' ARP entries for it
        # stay right (a fresh random MAC would be unreachable from them until their
        # entries expire, some 30 s, timing connections out meanwhile).
        peer = ["peer", "name", "eth0", "netns", ns, "address", pod_mac(ip)]
        self._run(["ip", "link", "add", veth, "type", "veth", *peer])
        self._run(["ip", "link", "set", veth, "master", self.bridge, "up"])
        in_ns = ["ip", "-n", ns]
        self._run([*in_ns, "link", "set", "lo", "up"])
        self._run([*in_ns, "addr", "replace", f"{ip}/{self.ipam.prefixlen}", "dev", "eth0"])
        self._run([*in_ns, "link", "set", "eth0", "up"])
        self._run([*in_ns, "route", "replace", "default", "via", self.gateway, "dev", "eth0"])
        # Restoring the whole nat table makes this idempotent; without capture
        # it leaves an empty nat table (a reused netns loses old rules).
        rules = capture_rules(capture) if capture is not None else []
        self._run(["ip", "netns", "exec", ns, "iptables-restore"], input=restore_script(rules))
        # Apps run unprivileged: let them bind any port of their own namespace, as
        # Kubernetes runtimes do for pods (the sysctl is per network namespace).
        self._run(["ip", "netns", "exec", ns, "sh", "-c", f"echo 0 > {_UNPRIVILEGED_PORTS}"])

    def restore_tables(self, pod: str, restore_input: str) -> None:
        """Replace the tables ``restore_input`` names in the pod's netns (the service
        rules of a pod out of the mesh, ``service_nat``); the pod must exist."""
        address = self._pods[pod]
        assert address.netns is not None
        self._run(["ip", "netns", "exec", address.netns, "iptables-restore"], input=restore_input)

    def adopt_pod(self, pod: str, namespace: str | None = None) -> PodAddress:
        """Take over the network of a pod an earlier run created (after a supervisor crash).

        Nothing on the host changes: the netns, veth and capture rules stay as
        they are, and the pod keeps the address the (restored) ``ipam`` holds
        for it; they are recorded again so ``teardown`` removes them. Raises
        ``ValueError`` if the address or the namespace is missing.
        """
        if self._res.bridge is None:
            raise RuntimeError("TransparentNetwork.setup() must run before adopt_pod()")
        ns = netns_name(pod, self.netns_prefix)
        ip = self.ipam.get(pod)
        if ip is None:
            raise ValueError(f"pod {pod!r} holds no address in the restored allocations")
        if ns not in list_netns(self._run):
            raise ValueError(f"network namespace {ns} of pod {pod!r} is gone")
        veth = veth_name(ns, self.veth_prefix)
        _append_once(self._res.netns, ns)
        _append_once(self._res.host_veths, veth)
        _append_once(self._res.files, str(self._etc_netns / ns))
        self._namespaces[pod] = namespace
        address = PodAddress(pod=pod, ip=ip, netns=ns, exec_prefix=("ip", "netns", "exec", ns))
        self._pods[pod] = address
        return address

    def delete_pod(self, pod: str) -> None:
        """Remove the pod's veth, netns, name files and address. Idempotent."""
        ns = netns_name(pod, self.netns_prefix)
        veth = veth_name(ns, self.veth_prefix)
        if link_exists(veth, self._run):
            self._run(["ip", "link", "del", veth])
        if ns in list_netns(self._run):
            self._run(["ip", "netns", "del", ns])
        shutil.rmtree(self._etc_netns / ns, ignore_errors=True)
        self.ipam.release(pod)
        self._pods.pop(pod, None)
        self._namespaces.pop(pod, None)
        _remove(self._res.netns, ns)
        _remove(self._res.host_veths, veth)
        _remove(self._res.files, str(self._etc_netns / ns))

    # -- names ---------------------------------------------------------------

    def update_names(self, names: Sequence[ServiceName], pods: Mapping[str, str]) -> None:
        """Rewrite every known pod's hosts/resolv.conf in place.

        ``pods`` maps pod -> mesh namespace; pods this network did not create
        are ignored; pods missing from ``pods`` keep their last namespace.
        The names are remembered for pods created later.
        """
        self._names = tuple(names)
        for pod, namespace in pods.items():
            if pod in self._pods:
                self._namespaces[pod] = namespace
        for pod, address in self._pods.items():
            assert address.netns is not None
            self._write_names(pod, address.netns)

    def _write_names(self, pod: str, ns: str) -> None:
        namespace = self._namespaces.get(pod)
        folder = self._etc_netns / ns
        hosts = hosts_file(self._names, namespace, cluster_domain=self.cluster_domain)
        write_in_place(folder / "hosts", hosts)
        write_in_place(
            folder / "resolv.conf", resolv_conf(namespace, cluster_domain=self.cluster_domain)
        )

    # -- lifecycle -----------------------------------------------------------

    def pods(self) -> dict[str, PodAddress]:
        """pod -> address of every pod currently created."""
        return dict(self._pods)

    def resources(self) -> HostResources:
        """A copy of everything this network created and has not removed yet."""
        return HostResources(
            bridge=self._res.bridge,
            netns=list(self._res.netns),
            host_veths=list(self._res.host_veths),
            iptables_rules=[list(rule) for rule in self._res.iptables_rules],
            files=list(self._res.files),
        )

    def teardown(self) -> None:
        """Remove all pods, the host rule and the bridge. Idempotent."""
        cleanup_leftovers(self.resources(), runner=self._run, etc_netns=self._etc_netns)
        for pod in list(self.ipam.allocations()):
            self.ipam.release(pod)
        self._pods.clear()
        self._namespaces.clear()
        self._res = HostResources()

    def _ignore_exists(self, argv: list[str]) -> None:
        try:
            self._run(argv)
        except CommandError as exc:
            if "exists" not in exc.stderr:
                raise


def _loads(text: str) -> Any:
    text = text.strip()
    return json.loads(text) if text else []


def _append_once(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


def _remove(items: list[str], item: str) -> None:
    while item in items:
        items.remove(item)
