"""``GET /pilotfish/v1/nodeconfig``: what a host that runs pods needs to know of
this control plane (``pilotfish up --control-plane``, ``runtime.node_mode``).

A node is given only the control planes' HTTP API addresses. From each it
learns here the ports its pods' agents dial on the same host (xDS over mTLS
and the CA: replicas shift them by an offset the node cannot guess), the
trust domain, and the service range and domain suffix the registry allocates
VIPs with (``registry.vips``: a VIP is a function of the hostnames and that
range), so the node writes its pods' hosts files with the addresses every
control plane's listeners use. Behind the API's bearer-token middleware like
every route but ``/ready`` and ``/metrics``: only an admin's node asks.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from pilotfish.controlplane.settings import ControlPlaneSettings

__all__ = ["NODE_CONFIG_PATH", "add_node_config_api"]

NODE_CONFIG_PATH = "/pilotfish/v1/nodeconfig"


class _ControlPlane(Protocol):
    @property
    def settings(self) -> ControlPlaneSettings: ...
    @property
    def ready(self) -> bool: ...
    @property
    def has_ca(self) -> bool: ...

    xds_mtls_port: int
    secure_port: int


def add_node_config_api(app: web.Application, cp: _ControlPlane) -> None:
    async def node_config(request: web.Request) -> web.Response:
        if not cp.ready:
            return web.json_response({"error": "the control plane is starting"}, status=503)
        if not cp.has_ca:
            # Without the mesh CA a node's pods could get neither identity nor xDS.
            return web.json_response(
                {"error": "the control plane runs no mesh CA: nodes need one"}, status=409
            )
        s = cp.settings
        return web.json_response(
            {
                "xdsMtlsPort": cp.xds_mtls_port,
                "caPort": cp.secure_port,
                "trustDomain": s.mesh.trust_domain,
                "serviceCidr": s.service_cidr,
                "domainSuffix": s.domain_suffix,
            }
        )

    app.router.add_get(NODE_CONFIG_PATH, node_config)
