"""A TLS Ingress served by a real gateway Envoy: the Ingress's ``secretName``,
read from the ingress gateway's namespace (as Istio does), is the certificate
the gateway presents for the Ingress's host on the HTTPS port, and a request
over that TLS connection is routed by the Ingress's rules.

Reuses the real control plane + CA + gateway agent of ``test_gateway_sds``.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest
from meshkit import poll
from test_gateway_sds import GW_NS, HOST, GatewayRun, gateway

from pilotfish.translate.ingress import INGRESS_HTTPS_PORT
from pki import Leaf, TestCa, serial_of, tls_secret

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

__all__ = ["gateway"]  # the fixture, imported for this module's tests

INGRESS = f"""\
apiVersion: v1
kind: Service
metadata: {{name: shop, namespace: default}}
spec:
  ports: [{{name: http, port: 8080}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  namespace: default
  annotations: {{kubernetes.io/ingress.class: istio}}
spec:
  tls:
  - hosts: [{HOST}]
    secretName: shop-cert
  rules:
  - host: {HOST}
    http:
      paths:
      - path: /cart
        pathType: Prefix
        backend: {{service: {{name: shop, port: {{number: 8080}}}}}}
"""


async def _https(run: GatewayRun, ca: TestCa, path: str) -> tuple[int | None, int | None]:
    """(serial of the certificate presented for HOST, HTTP status of GET ``path``)."""
    ctx = ssl.create_default_context(cadata=ca.ca_pem)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(run.ip, INGRESS_HTTPS_PORT, ssl=ctx, server_hostname=HOST),
            5,
        )
    except (OSError, ssl.SSLError, TimeoutError):
        return None, None
    try:
        serial = serial_of(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        status_line = await asyncio.wait_for(reader.readline(), 5)
        return serial, int(status_line.split()[1])
    finally:
        writer.close()


async def test_a_tls_ingress_serves_its_secret_and_routes_its_paths(gateway: GatewayRun) -> None:
    run = gateway
    ca = TestCa()
    leaf: Leaf = ca.issue(HOST, dns=(HOST,))
    run.write("secret.yaml", tls_secret("shop-cert", GW_NS, leaf))
    run.write("ingress.yaml", INGRESS)

    async def presented() -> bool:
        if run.proc.poll() is not None:
            raise AssertionError(f"gateway agent exited\n{run.log()}")
        return (await _https(run, ca, "/"))[0] == leaf.serial

    await poll(presented, "the gateway to present the Ingress's certificate", 40)
    # /cart is routed (to a Service without endpoints: 503); / matches no path: 404.
    assert await _https(run, ca, "/cart/1") == (leaf.serial, 503)
    assert await _https(run, ca, "/") == (leaf.serial, 404)
