"""The remote control planes of a node (``pilotfish up --control-plane URL,...``).

Theory of operation. A node knows only the control planes' HTTP API URLs and
the admin API token, as a kubelet knows the API server and its credentials.
Every call goes to one URL at a time, starting with the last one that
answered: a connection failure, a timeout or a 5xx moves on to the next
(another replica serves the same store), a 401 stops at once (the token is
wrong everywhere alike), any other answer is the answer. When no URL
answers, ``RemoteError`` names what each said.

``discover`` asks every URL for ``/pilotfish/v1/nodeconfig``: the ports its
pods' agents dial on that host (xDS over mTLS and the CA), the trust domain,
and the service range the registry allocates VIPs from. A replica that does
not answer within the deadline is left out (its proxies then never use it),
as long as one does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any

import aiohttp

from pilotfish.controlplane.api_token import ApiToken
from pilotfish.controlplane.join_token_api import JOIN_TOKENS_PATH
from pilotfish.controlplane.node_config_api import NODE_CONFIG_PATH
from pilotfish.runtime.settings_checks import parse_urls

__all__ = [
    "NodeConfig",
    "RemoteControlPlane",
    "RemoteError",
    "RemoteReplica",
    "parse_urls",
]

log = logging.getLogger("pilotfish.runtime.remote")


class RemoteError(Exception):
    """No remote control plane gave a usable answer; the message says what each did."""


@dataclass(frozen=True, slots=True)
class RemoteReplica:
    """One remote control plane as the node's pods dial it."""

    url: str
    host: str
    xds_mtls_port: int
    ca_port: int


@dataclass(frozen=True, slots=True)
class NodeConfig:
    replicas: tuple[RemoteReplica, ...]
    trust_domain: str
    service_cidr: str | None
    domain_suffix: str

    @property
    def xds_addresses(self) -> str:
        return ",".join(f"{r.host}:{r.xds_mtls_port}" for r in self.replicas)

    @property
    def ca_addresses(self) -> str:
        return ",".join(f"{r.host}:{r.ca_port}" for r in self.replicas)


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or ""


class RemoteControlPlane:
    """Calls to the remote control planes' API, failing over between URLs."""

    def __init__(self, urls: tuple[str, ...], token: ApiToken, timeout: float = 5.0) -> None:
        if not urls:
            raise ValueError("at least one control-plane URL is required")
        self.urls = urls
        self._token = token
        self._timeout = timeout
        self._first = 0  # the URL that answered last
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"Authorization": f"Bearer {self._token.reveal()}"},
                trust_env=False,  # a node's proxy settings are not the mesh's way there
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call_one(self, url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request to ``url``: (status, decoded JSON or None). OSError-like
        failures raise ``aiohttp.ClientError`` or ``TimeoutError``."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self._client().request(method, url + path, data=data, headers=headers) as resp:
            raw = await resp.read()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        return resp.status, decoded

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The first usable answer, trying each URL from the last good one."""
        failures: list[str] = []
        n = len(self.urls)
        for step in range(n):
            i = (self._first + step) % n
            url = self.urls[i]
            try:
                status, doc = await self.call_one(url, method, path, body)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                failures.append(f"{url}: {type(exc).__name__} {exc}".rstrip())
                continue
            if status == 401:
                raise RemoteError(f"{url} refused the API token (401)")
            if status >= 500:
                failures.append(f"{url}: HTTP {status} {_message(doc)}".rstrip())
                continue
            self._first = i
            return status, doc
        raise RemoteError(f"{method} {path}: no control plane answered: " + "; ".join(failures))

    async def discover(self, deadline_s: float) -> NodeConfig:
        """Every URL's node configuration; polls until ``deadline_s`` for each."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        answers: dict[str, dict[str, Any]] = {}
        last: dict[str, str] = {}
        while True:
            for url in self.urls:
                if url in answers:
                    continue
                try:
                    status, doc = await self.call_one(url, "GET", NODE_CONFIG_PATH)
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    last[url] = f"{type(exc).__name__} {exc}".rstrip()
                    continue
                if status == 401:
                    raise RemoteError(f"{url} refused the API token (401)")
                if status == 200 and isinstance(doc, dict):
                    answers[url] = doc
                elif status != 503:  # 503: still starting, ask again
                    raise RemoteError(f"{url}{NODE_CONFIG_PATH}: HTTP {status} {_message(doc)}")
                else:
                    last[url] = "starting"
            if len(answers) == len(self.urls) or (answers and loop.time() >= deadline):
                break
            if loop.time() >= deadline:
                said = "; ".join(f"{u}: {why}" for u, why in last.items())
                raise RemoteError(f"no control plane answered within {deadline_s:g}s: {said}")
            await asyncio.sleep(0.2)
        for url in self.urls:
            if url not in answers:
                log.warning("control plane %s did not answer; its pods will not use it", url)
        return _node_config(self.urls, answers)

    async def join_token(
        self, namespace: str, service_account: str, ttl_s: float
    ) -> dict[str, Any]:
        """A fresh join token for one pod (token, rootCert, trustDomain...)."""
        body = {"namespace": namespace, "serviceAccount": service_account, "ttlSeconds": ttl_s}
        status, doc = await self.call("POST", JOIN_TOKENS_PATH, body)
        if status != 201 or not isinstance(doc, dict) or not doc.get("token"):
            raise RemoteError(
                f"join token for {namespace}/{service_account}: HTTP {status} {_message(doc)}"
            )
        return doc

    async def list_items(self, path: str) -> tuple[str, list[dict[str, Any]]]:
        """A list endpoint's (resourceVersion, items)."""
        status, doc = await self.call("GET", path)
        if status != 200 or not isinstance(doc, dict):
            raise RemoteError(f"GET {path}: HTTP {status} {_message(doc)}")
        version = str((doc.get("metadata") or {}).get("resourceVersion", ""))
        return version, [i for i in doc.get("items") or [] if isinstance(i, dict)]


def _node_config(urls: tuple[str, ...], answers: dict[str, dict[str, Any]]) -> NodeConfig:
    replicas = tuple(
        RemoteReplica(url, _host(url), int(doc["xdsMtlsPort"]), int(doc["caPort"]))
        for url, doc in ((u, answers[u]) for u in urls if u in answers)
    )
    first = answers[replicas[0].url]
    domains = {str(answers[r.url].get("trustDomain")) for r in replicas}
    cidrs = {answers[r.url].get("serviceCidr") for r in replicas}
    if len(domains) > 1 or len(cidrs) > 1:
        # Replicas of one mesh agree; a mix would give pods addresses no one serves.
        raise RemoteError(
            f"the control planes disagree (trust domains {sorted(domains)}, service "
            f"ranges {sorted(map(str, cidrs))}): are they one mesh?"
        )
    cidr = first.get("serviceCidr")
    return NodeConfig(
        replicas,
        str(first.get("trustDomain") or "cluster.local"),
        str(cidr) if cidr else None,
        str(first.get("domainSuffix") or "cluster.local"),
    )


def _message(doc: Any) -> str:
    if isinstance(doc, dict):
        return str(doc.get("error") or doc.get("message") or "")
    return ""
