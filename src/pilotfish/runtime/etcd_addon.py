"""The etcd addon: a one-member etcd (Debian's ``etcd-server``) holding the mesh's configuration.

Theory of operation: unlike the telemetry addons, etcd runs *before* the
control plane, which uses it as its store (``--addons etcd`` means
``--config-store etcd://127.0.0.1:<port>``). It listens on loopback only:
clients on ``etcd_port`` (2379 by default), its peer port (unused by a
single member, but etcd always binds one) on ``etcd_port + 1``. Its data
lives in ``<state>/etcd`` (0700) beside ``config/``, not in the addon's work
directory: like ``config/`` for the file store it outlives the run, so a
supervisor that crashed, or a later ``up`` after ``pilotfish down`` (which
stops etcd with everything else), serves the configuration that was applied.
Remove the directory to start from nothing.

Transactions may hold more operations and bytes than etcd's defaults
(128, 1.5 MiB) because ``pilotfish apply`` of a whole directory is one
transaction.
"""

from __future__ import annotations

from pathlib import Path

from pilotfish.runtime.addons import AddonSpec

__all__ = ["ETCD_BINARY", "MAX_TXN_OPS", "etcd_argv", "etcd_spec"]

ETCD_BINARY = "etcd"
MAX_TXN_OPS = 4096
_MAX_REQUEST_BYTES = 8 * 1024 * 1024


def etcd_argv(
    data_dir: Path,
    client_port: int,
    peer_port: int,
    *,
    name: str = "pilotfish",
    host: str = "127.0.0.1",
) -> tuple[str, ...]:
    """The command line of a one-member etcd serving plain HTTP on ``host``."""
    client = f"http://{host}:{client_port}"
    peer = f"http://{host}:{peer_port}"
    return (
        ETCD_BINARY,
        f"--name={name}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={name}={peer}",
        "--initial-cluster-state=new",
        f"--max-txn-ops={MAX_TXN_OPS}",
        f"--max-request-bytes={_MAX_REQUEST_BYTES}",
        "--logger=zap",
        "--log-level=warn",
    )


def etcd_spec(state_dir: Path, work_dir: Path, port: int) -> AddonSpec:
    """The etcd addon of the mesh whose state is in ``state_dir``."""
    data = state_dir / "etcd"
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    return AddonSpec(
        name="etcd",
        argv=etcd_argv(data, port, port + 1),
        ready_url=f"{url}/health",
        url=f"etcd://127.0.0.1:{port}",
        work_dir=work_dir,
    )
