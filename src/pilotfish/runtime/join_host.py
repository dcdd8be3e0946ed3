"""One workload of a host that joins the mesh: its sidecar agent, run until stopped.

Theory of operation. ``pilotfish join`` is given a join file (``pilotfish
join-token create``: token, namespace, service account, WorkloadGroup, group
labels, mesh root), the control planes' addresses, the address other hosts
reach this one on and the app's ports. ``prepare`` writes, in a private
state directory (0700), the root certificate and a copy of the token (0600):
the agent's CA client replaces that copy with the workload's renewal token
after its first certificate (the join token is spent then; the user's file
is left as it is, so a second ``join`` with it is refused by the CA).

The agent is ``pilotfish agent`` in explicit mode (the app dials the sidecar
as an HTTP proxy, as explicit-mode pods do): it binds the group's ports on
``--address`` and forwards them to the app on loopback, gets its certificate
from the first CA that answers, and talks xDS over mTLS to every control
plane given (Envoy fails over between them). Its node metadata names the
WorkloadGroup, so the control plane registers the workload while it is
connected (``controlplane.auto_registration``).

``run`` starts the agent in a session of its own and waits. SIGTERM or
SIGINT to ``join`` stops the agent (SIGTERM: it drains and stops Envoy),
after ``stop_timeout`` its whole process group is killed, and the state
directory is removed: nothing is left behind, the renewal token included (a
workload that left rejoins with a new join token).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilotfish.agent.launch import AgentIdentity, AgentLaunch
from pilotfish.api.networking.workload_group import member_name
from pilotfish.control_plane_ports import XDS_MTLS_PORT, XDS_PORT
from pilotfish.fsutil import atomic_write_text

__all__ = ["ControlPlaneAddress", "JoinPlan", "app_ports_of", "parse_control_planes", "run"]


@dataclass(frozen=True, slots=True)
class ControlPlaneAddress:
    """A control plane as a joining host dials it: xDS over mTLS and the CA next to it."""

    host: str
    xds_mtls_port: int = XDS_MTLS_PORT

    @property
    def ca_port(self) -> int:
        # The CA listens one port above xDS-over-mTLS (15012 next to 15011; replicas
        # shift both by the same offset).
        return self.xds_mtls_port + 1


def parse_control_planes(text: str) -> tuple[ControlPlaneAddress, ...]:
    """``HOST[:XDS_MTLS_PORT][,...]`` (ValueError if malformed)."""
    out: list[ControlPlaneAddress] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        if not sep:
            out.append(ControlPlaneAddress(item))
            continue
        if not port.isdigit() or not 0 < int(port) < 65535:
            raise ValueError(f"bad control-plane address {item!r}: port must be 1..65534")
        out.append(ControlPlaneAddress(host, int(port)))
    if not out:
        raise ValueError("at least one control-plane address is required")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class JoinPlan:
    """Everything about one joined workload. ``grant`` is the join file's content."""

    grant: dict[str, Any]
    control_planes: tuple[ControlPlaneAddress, ...]
    address: str
    app_ports: tuple[tuple[int, int], ...]
    state_dir: Path
    admin_port: int = 15000
    health_port: int = 15021
    agent_args: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return member_name(
            self.grant["workloadGroup"] or self.grant["serviceAccount"], self.address
        )

    @property
    def token_file(self) -> Path:
        return self.state_dir / "ca-token"

    @property
    def root_cert_file(self) -> Path:
        return self.state_dir / "root-cert.pem"

    def launch(self) -> AgentLaunch:
        cps = self.control_planes
        identity = AgentIdentity(
            ca_address=",".join(f"{c.host}:{c.ca_port}" for c in cps),
            xds_secure_address=",".join(f"{c.host}:{c.xds_mtls_port}" for c in cps),
            ca_token_file=str(self.token_file),
            root_cert_file=str(self.root_cert_file),
            trust_domain=str(self.grant.get("trustDomain") or "cluster.local"),
            cert_ttl="86400s",
        )
        labels = self.grant.get("labels") or {}
        return AgentLaunch(
            name=self.name,
            namespace=self.grant["namespace"],
            service_account=self.grant["serviceAccount"],
            # Only the mTLS port serves a joined host; the plain address is the
            # agent's required argument, never dialled with xDS over TLS.
            xds_address=",".join(f"{c.host}:{XDS_PORT}" for c in cps),
            admin_port=self.admin_port,
            health_port=self.health_port,
            work_dir=str(self.state_dir / "agent"),
            ip=(self.address,),
            interception="none",
            workload=self.grant["workloadGroup"] or None,
            app_port=self.app_ports,
            label=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            identity=identity,
            workload_group=self.grant["workloadGroup"] or None,
            extra_args=self.agent_args,
        )

    def prepare(self) -> None:
        """The private state directory with the root certificate and the token copy."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        atomic_write_text(self.root_cert_file, self.grant["rootCert"], mode=0o644)
        atomic_write_text(self.token_file, self.grant["token"] + "\n", mode=0o600)

    def clean(self) -> None:
        shutil.rmtree(self.state_dir, ignore_errors=True)


async def run(plan: JoinPlan, *, stop_timeout: float = 15.0) -> int:
    """Run the agent until it exits or ``join`` is told to stop; returns its exit code."""
    plan.prepare()
    try:
        argv = plan.launch().to_argv([sys.executable, "-m", "pilotfish.cli.agent"])
        proc = await asyncio.create_subprocess_exec(*argv, start_new_session=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            waiter = asyncio.ensure_future(proc.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if proc.returncode is None:
                await _stop(proc, stop_timeout)
            return await waiter
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            _kill_group(proc.pid)  # anything the agent left in its session
    finally:
        plan.clean()


async def _stop(proc: asyncio.subprocess.Process, timeout: float) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        _kill_group(proc.pid)
        await proc.wait()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def app_ports_of(specs: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """``PORT`` or ``PORT=APP_PORT`` items (the app listens on loopback APP_PORT)."""
    out: dict[int, int] = {}
    for spec in specs:
        target, _, app = spec.partition("=")
        if not target.isdigit() or (app and not app.isdigit()):
            raise ValueError(f"bad --app-port {spec!r}: PORT or PORT=APP_PORT")
        out[int(target)] = int(app or target)
    return tuple(sorted(out.items()))
