"""The Prometheus addon: Debian's ``prometheus`` server scraping the whole mesh.

Theory of operation: the runtime writes a configuration under
``<state>/addons/prometheus/`` and runs ``prometheus`` on
``127.0.0.1:<port>`` with its data there too (short retention: it is a local
mesh's recent history, not a long-term store). Three jobs, named and labelled
as in Istio's addon configuration so Kiali-style queries work unchanged:

- ``pilotfish-control-plane``: the control plane's ``/metrics``;
- ``kubernetes-pods``: every sidecar's and gateway's merged endpoint
  (``:15020/stats/prometheus``: Envoy's metrics with Istio's names, the
  agent's and the app's), labelled ``namespace``, ``pod`` and the pod's own
  labels (``app``, ``version``...);
- its own ``/metrics`` (``prometheus``).

Targets follow pods as they come and go through file-based discovery: the
runtime rewrites ``targets.json`` atomically whenever the set of ready pods
changes and Prometheus re-reads it within a second.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pilotfish.fsutil import atomic_write_text
from pilotfish.runtime.addons import AddonSpec

__all__ = [
    "PROMETHEUS_BINARY",
    "SCRAPE_PATH",
    "ScrapeTarget",
    "prometheus_spec",
    "render_config",
    "render_targets",
    "write_targets",
]

PROMETHEUS_BINARY = "prometheus"
SCRAPE_PATH = "/stats/prometheus"  # the agent's merged endpoint (Istio's metrics merging)
_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """One proxy to scrape: ``address`` is ``host:port`` of its merged endpoint."""

    address: str
    namespace: str
    pod: str
    labels: tuple[tuple[str, str], ...] = field(default=())


def _label_name(name: str) -> str:
    """A Kubernetes label as a Prometheus label name (Istio's addon uses labelmap,
    which turns ``app.kubernetes.io/name`` into ``app_kubernetes_io_name``)."""
    return _LABEL_NAME.sub("_", name)


def render_targets(targets: Iterable[ScrapeTarget]) -> str:
    """The ``file_sd_configs`` JSON for ``targets`` (sorted, so equal sets are equal files)."""
    groups = []
    for t in sorted(targets, key=lambda t: (t.namespace, t.pod)):
        labels = {_label_name(k): v for k, v in t.labels}
        labels |= {"namespace": t.namespace, "pod": t.pod, "pod_name": t.pod}
        groups.append({"targets": [t.address], "labels": labels})
    return json.dumps(groups, indent=1, sort_keys=True) + "\n"


def write_targets(path: Path, targets: Iterable[ScrapeTarget]) -> bool:
    """Rewrite the targets file when its content changes; returns whether it did."""
    text = render_targets(targets)
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    atomic_write_text(path, text, mode=0o644)
    return True


def render_config(
    control_plane: str, targets_file: Path, listen: str, scrape_interval_s: float
) -> str:
    """prometheus.yml: the control plane, the proxies from ``targets_file``, itself."""
    interval = f"{scrape_interval_s:g}s"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": "pilotfish-control-plane",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [control_plane]}],
            },
            {
                "job_name": "kubernetes-pods",
                "metrics_path": SCRAPE_PATH,
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}],
            },
            {"job_name": "prometheus", "static_configs": [{"targets": [listen]}]},
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def prometheus_spec(
    work_dir: Path,
    port: int,
    control_plane: str,
    scrape_interval_s: float = 5.0,
) -> AddonSpec:
    """Write the configuration (and an empty targets file) and describe the process."""
    work_dir.mkdir(parents=True, exist_ok=True)
    targets = work_dir / "targets.json"
    if not targets.exists():
        write_targets(targets, ())
    listen = f"127.0.0.1:{port}"
    config = work_dir / "prometheus.yml"
    atomic_write_text(
        config, render_config(control_plane, targets, listen, scrape_interval_s), mode=0o644
    )
    argv = (
        PROMETHEUS_BINARY,
        f"--config.file={config}",
        f"--storage.tsdb.path={work_dir / 'data'}",
        "--storage.tsdb.retention.time=2h",
        f"--web.listen-address={listen}",
        "--web.enable-lifecycle",
        "--log.level=warn",
    )
    return AddonSpec(
        name="prometheus",
        argv=argv,
        ready_url=f"http://{listen}/-/ready",
        url=f"http://{listen}",
        work_dir=work_dir,
    )
