"""Synthetic mesh configuration for the scale benchmark: N services, one file each.

Every service ``svc-<i>`` in namespace ``default`` gets, in ``svc-<i>.yaml``: a
``v1 Service`` (port ``http`` 9080 -> 9080, selector ``app: svc-<i>``), four
``WorkloadEntry`` objects (two ``version: v1``, two ``version: v2``) at loopback
addresses that are never dialled, a ``DestinationRule`` with subsets v1/v2 and a
``VirtualService`` splitting traffic between them. Edits are written atomically
(hidden temporary file, then rename) so a watching store never reads half a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

__all__ = [
    "ENDPOINTS_PER_SERVICE",
    "SERVICE_PORT",
    "endpoint_address",
    "generate_config",
    "service_documents",
    "service_file",
    "write_service",
]

SERVICE_PORT = 9080
ENDPOINTS_PER_SERVICE = 4
_NAMESPACE = "default"


def endpoint_address(service: int, endpoint: int, block: int = 10) -> str:
    """Loopback address of endpoint ``endpoint`` of service ``service``: ``127.<block>.x.y``."""
    n = service * ENDPOINTS_PER_SERVICE + endpoint + 1
    if n >= 1 << 16:
        raise ValueError(f"too many endpoints for one 127.{block}.0.0/16 block: {n}")
    return f"127.{block}.{n >> 8}.{n & 0xFF}"


def service_documents(
    index: int,
    weights: tuple[int, int] = (90, 10),
    address_overrides: dict[int, str] | None = None,
) -> list[dict[str, object]]:
    """The Kubernetes/Istio documents of service ``index``.

    ``weights`` is the v1/v2 split of its VirtualService; ``address_overrides`` maps an
    endpoint number (0-3) to a different address for its WorkloadEntry.
    """
    name = f"svc-{index}"
    overrides = address_overrides or {}
    meta = {"name": name, "namespace": _NAMESPACE}
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": dict(meta, labels={"app": name}),
            "spec": {
                "selector": {"app": name},
                "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": SERVICE_PORT}],
            },
        }
    ]
    for endpoint in range(ENDPOINTS_PER_SERVICE):
        version = "v1" if endpoint < ENDPOINTS_PER_SERVICE // 2 else "v2"
        docs.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "WorkloadEntry",
                "metadata": {"name": f"{name}-{endpoint}", "namespace": _NAMESPACE},
                "spec": {
                    "address": overrides.get(endpoint, endpoint_address(index, endpoint)),
                    "labels": {"app": name, "version": version},
                    "ports": {"http": SERVICE_PORT},
                    "serviceAccount": "default",
                },
            }
        )
    docs.append(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": dict(meta),
            "spec": {
                "host": name,
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}},
                ],
            },
        }
    )
    docs.append(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": dict(meta),
            "spec": {
                "hosts": [name],
                "http": [
                    {
                        "route": [
                            {"destination": {"host": name, "subset": "v1"}, "weight": weights[0]},
                            {"destination": {"host": name, "subset": "v2"}, "weight": weights[1]},
                        ]
                    }
                ],
            },
        }
    )
    return docs


def service_file(config_dir: Path, index: int) -> Path:
    """The file holding every document of service ``index``."""
    return config_dir / f"svc-{index}.yaml"


def write_service(
    config_dir: Path,
    index: int,
    weights: tuple[int, int] = (90, 10),
    address_overrides: dict[int, str] | None = None,
) -> Path:
    """Write (or atomically replace) the file of service ``index``; return its path."""
    text = yaml.safe_dump_all(service_documents(index, weights, address_overrides), sort_keys=False)
    path = service_file(config_dir, index)
    temporary = config_dir / f".{path.name}.tmp"  # hidden: stores skip dot files
    temporary.write_text(text)
    os.replace(temporary, path)
    return path


def generate_config(config_dir: Path, services: int) -> list[Path]:
    """Create ``config_dir`` with one multi-document file per service."""
    config_dir.mkdir(parents=True, exist_ok=True)
    return [write_service(config_dir, i) for i in range(services)]
