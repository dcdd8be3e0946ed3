"""The supervisor's side of re-adoption: carrying out ``adoption``'s decisions.

``MeshRuntime`` (``mesh.py``) inherits these steps; see the theory of
operation there (and in ``adoption.py`` for what is adopted and why). Here:
restore the address allocations, rebuild each adoptable pod's runner over
its live processes (``supervised.AdoptedProcess``) and let it probe the pod
once, kill and forget the pods that cannot be adopted, release addresses and
namespaces nobody holds any more, and take over the gateways still running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from pilotfish.ca.records import IssuedRecord
from pilotfish.runtime import adoption
from pilotfish.runtime.gateway_deployments import DeploymentMixin
from pilotfish.runtime.gateways import GatewayProcess, GatewaySpec
from pilotfish.runtime.ipam import Ipam, IpamError
from pilotfish.runtime.network.base import PodAddress, PodNetwork
from pilotfish.runtime.pod import PodRunner, PodSpec
from pilotfish.runtime.pod_spec import PodSpecError
from pilotfish.runtime.process import PIDS_FILE, ProcessRecord, kill_recorded_dir, read_pid_record
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.runtime.state import MeshState
from pilotfish.runtime.supervised import AdoptedProcess

__all__ = ["AdoptionMixin", "Pod", "net_id"]


@dataclass
class Pod:
    """One pod of the mesh as the supervisor tracks it."""

    key: tuple[str, str]  # (namespace, pod name)
    workload_hash: str  # ``adoption.workload_hash`` of the Workload it was made from
    runner: PodRunner
    ip: str
    netns: str | None
    # ``sidecar``, ``ambient`` or ``none`` (out of the mesh: no proxy, no capture).
    dataplane: str = "sidecar"


def net_id(namespace: str, name: str) -> str:
    """The pod's name on this host (``PodSpec.local_id``)."""
    return name if namespace == "default" else f"{name}.{namespace}"


class AdoptionMixin(DeploymentMixin):
    """Adoption steps of ``MeshRuntime``; the attributes below are the runtime's
    (``DeploymentMixin`` adopts the Gateway API deployments)."""

    settings: RuntimeSettings
    network: PodNetwork | None
    pods: dict[tuple[str, str], Pod]
    gateways: list[GatewayProcess]
    _state: MeshState
    _progress: Callable[[str], None]

    def _runner(self, spec: PodSpec, address: PodAddress) -> PodRunner:
        raise NotImplementedError

    def _gateway_specs(self, recorded: dict[str, dict[str, Any]]) -> list[GatewaySpec]:
        raise NotImplementedError

    def _gateway_process(
        self, spec: GatewaySpec, sa: str | None = None, role: str = "gateway", node_name: str = ""
    ) -> GatewayProcess:
        raise NotImplementedError

    def _restorable(self, previous: MeshState | None) -> Ipam | None:
        """The earlier run's address allocations if its pods may be adopted, else None."""
        reason = adoption.why_not_adopt(previous, self.settings)
        if reason is None and previous is not None:
            try:
                return Ipam.from_json(previous.ipam)
            except IpamError as exc:
                reason = f"its address allocations cannot be restored: {exc}"
        if previous is not None and previous.phase != "stopped" and previous.pods:
            self._state.message = f"not adopting the earlier run's pods ({reason}): removing them"
            self._progress(self._state.message)
        return None

    async def _adopt(self, previous: MeshState) -> set[str]:
        """Take over the earlier run's live pods and gateways; returns the gateways adopted."""
        assert self.network is not None
        s = self.settings
        namespaces: set[str] | None = None
        if s.mode == "transparent":
            from pilotfish.runtime.network.host import list_netns

            namespaces = set(list_netns())
        starts: list[Awaitable[bool]] = []
        for key, entry in previous.pods.items():
            namespace, _, name = key.partition("/")
            local_id = net_id(namespace, name)
            pod_dir = s.work_dir / local_id
            records = read_pid_record(pod_dir / PIDS_FILE)
            facts = adoption.pod_facts(entry, records, pod_dir, namespaces)
            decision = adoption.decide_pod(entry, records, facts)
            start = None
            if decision.adopt:
                try:
                    start = self._adopt_pod(entry, records, decision)
                except (ValueError, PodSpecError) as exc:
                    decision = adoption.PodDecision(False, str(exc))
            if start is None:
                self._progress(f"not adopting pod {name}: {decision.reason}")
                kill_recorded_dir(pod_dir)
                self.network.delete_pod(local_id)
            else:
                starts.append(start)
        # Gateway API deployments whose agents still run keep their addresses.
        deployments = self._adopt_deployments(previous)
        self._forget_unadopted_addresses(namespaces, deployments)
        self._record_network()  # the adopted namespaces, for a later cleanup
        ready = await asyncio.gather(*starts)
        self._state.message = f"adopted {len(starts)} running pods ({sum(ready)} ready)"
        self._progress(self._state.message)
        return self._adopt_gateways(previous) | deployments

    def _adopt_pod(
        self,
        entry: dict[str, Any],
        records: dict[str, ProcessRecord],
        decision: adoption.PodDecision,
    ) -> Awaitable[bool] | None:
        """Rebuild one pod's runner over its live processes; the coroutine that adopts it
        (None if its sidecar vanished meanwhile)."""
        assert self.network is not None
        spec = PodSpec.from_json(entry["spec"])
        # May raise ValueError; the caller then removes the pod's network.
        address = self.network.adopt_pod(spec.local_id, spec.namespace)
        sidecar = None
        if not decision.completed:
            sidecar = AdoptedProcess.adopt(records[adoption.SIDECAR])
            if sidecar is None:
                return None
        app = AdoptedProcess.adopt(records[adoption.APP]) if decision.adopt_app else None
        runner = self._runner(spec, address)
        pod = Pod(
            (spec.namespace, spec.name),
            str(entry["workload_hash"]),
            runner,
            address.ip,
            address.netns,
        )
        self.pods[pod.key] = pod
        self._state.pods[f"{spec.namespace}/{spec.name}"] = dict(entry)
        restarts = int(entry.get("restarts", 0) or 0)
        if sidecar is None:
            runner.adopt_completed(entry["phase"], str(entry.get("message", "")), restarts)
            return asyncio.sleep(0, False)
        ports = {int(k): int(v) for k, v in dict(entry.get("app_ports") or {}).items()}
        return runner.adopt(
            sidecar,
            app,
            app_ports=ports,
            restarts=restarts,
            started_at=entry.get("started_at"),
        )

    def _forget_unadopted_addresses(self, namespaces: set[str] | None, keep: set[str]) -> None:
        """Release addresses (and remove namespaces) that no adopted pod (nor ``keep``) holds."""
        assert self.network is not None
        adopted = {p.runner.spec.local_id for p in self.pods.values()} | keep
        ipam = getattr(self.network, "ipam", None)
        owners = set(ipam.allocations()) if isinstance(ipam, Ipam) else set()
        for owner in sorted(owners - adopted):
            self.network.delete_pod(owner)
        if namespaces is not None:
            from pilotfish.runtime.network.host import cleanup_leftovers
            from pilotfish.runtime.network.transparent import netns_name

            ours = {netns_name(pod, self.settings.netns_prefix) for pod in adopted}
            stray = [
                n for n in namespaces if n.startswith(self.settings.netns_prefix) and n not in ours
            ]
            if stray:
                from pilotfish.runtime.network.base import HostResources
                from pilotfish.runtime.network.names import NETNS_ETC

                files = [str(NETNS_ETC / n) for n in stray]
                with contextlib.suppress(RuntimeError):
                    cleanup_leftovers(HostResources(netns=sorted(stray), files=files))

    def _adopt_gateways(self, previous: MeshState) -> set[str]:
        adopted: set[str] = set()
        for spec in self._gateway_specs(previous.gateways):
            entry = previous.gateways.get(spec.name, {})
            gw_dir = self.settings.work_dir / spec.name
            record = read_pid_record(gw_dir / PIDS_FILE).get(adoption.GATEWAY_AGENT)
            start = adoption.live_start_times({"agent": record}).get("agent") if record else None
            reason = adoption.decide_gateway(entry, record, start)
            proc = AdoptedProcess.adopt(record) if reason is None and record else None
            if proc is None:
                self._progress(f"not adopting gateway {spec.name}: {reason or 'it exited'}")
                kill_recorded_dir(gw_dir)
                continue
            gw = self._gateway_process(spec)
            gw.adopt(proc, int(entry.get("restarts", 0) or 0))
            self.gateways.append(gw)
            adopted.add(spec.name)
        return adopted

    async def _restore_identity_records(self, record: Callable[[IssuedRecord], None]) -> None:
        """Tell the new CA (through ``record``) which certificates the adopted proxies
        hold (for status).

        Each agent answers its current certificate's public facts on ``/identity``;
        a proxy that does not answer shows none until its next rotation.
        """
        targets: list[tuple[str, str, str, str]] = [
            (
                p.runner.spec.local_id,
                p.runner.spec.namespace,
                p.runner.spec.service_account,
                p.runner.env.health_url("/identity"),
            )
            for p in self.pods.values()
        ]
        targets += [
            (
                g.spec.name,
                g.spec.namespace,
                g.service_account,
                g.health_url("/identity"),
            )
            for g in self.gateways
        ]
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:

            async def fetch(owner: str, namespace: str, sa: str, url: str) -> None:
                try:
                    async with session.get(url) as resp:
                        if resp.status != 200:
                            return
                        info = await resp.json()
                    record(
                        IssuedRecord(
                            pod=owner,
                            namespace=namespace,
                            service_account=sa,
                            spiffe_id=str(info["spiffe_id"]),
                            serial=str(info["serial"]).lower(),
                            not_after=float(info["not_after"]),
                            issued_at=float(info["issued_at"]),
                        )
                    )
                except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError):
                    return

            await asyncio.gather(*(fetch(*t) for t in targets))
