"""Speaking etcd's v3 API through its JSON gateway.

Theory of operation: etcd (3.4 and later) serves its whole v3 API as JSON on
the client port, beside gRPC: ``POST /v3/kv/range``, ``/v3/kv/txn``,
``/v3/kv/compaction``, ``/v3/lease/grant`` ... with keys and values in
base64, 64-bit numbers as strings, and fields at their default value (false,
0, empty) left out. ``/v3/watch`` answers a streaming POST with one JSON
object per line. Speaking it needs no generated code and no client library
pinned to one protobuf: the standard library for the blocking calls the
store's synchronous writes make, aiohttp (already used by the control plane)
for the watch stream and the leader's lease calls.

Endpoints: ``etcd://HOST:PORT[,HOST:PORT...]`` speaks plain HTTP, and
``etcds://...`` HTTPS, verified against ``EtcdTls.ca_file`` (the system
roots without one), presenting ``cert_file``/``key_file`` when given (as
etcdctl's ``--cacert``, ``--cert``, ``--key``). A call that cannot reach an
endpoint tries the next one; when none answers, ``EtcdUnavailable`` names
them all. An answer with an error (etcd's ``{"error", "code"}``) raises
``EtcdError`` with etcd's message.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from pilotfish.store.etcd_target import Endpoints, EtcdTls, host_in_url, parse_endpoints

__all__ = [
    "Endpoints",
    "EtcdClient",
    "EtcdError",
    "EtcdTls",
    "EtcdUnavailable",
    "b64",
    "parse_endpoints",
    "unb64",
]

#: How long a blocking call may take before the endpoint counts as unreachable.
DEFAULT_TIMEOUT = 5.0


class EtcdError(Exception):
    """etcd answered with an error; ``code`` is its gRPC status code (0 if unknown)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class EtcdUnavailable(EtcdError):
    """No endpoint answered (the message names each one and why). ``maybe_done``: a
    request reached one that then did not answer in time, so etcd may still carry
    it out (a timed-out write is not a refused one)."""

    def __init__(self, message: str, code: int = 14, maybe_done: bool = False) -> None:
        super().__init__(message, code)
        self.maybe_done = maybe_done


def b64(data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _check(doc: Any, path: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise EtcdError(f"etcd answered {path} with something that is not a JSON object")
    if "error" in doc:
        raise EtcdError(f"etcd: {doc.get('message') or doc['error']}", int(doc.get("code", 0)))
    return doc


class EtcdClient:
    """Blocking and asyncio calls to one etcd cluster (see the module docstring).

    The blocking calls (``call``) are for the store's synchronous writes; they
    never wait longer than ``timeout`` per endpoint. The asyncio side
    (``acall``, ``watch``) shares one aiohttp session, made on first use and
    closed by ``close()``.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        tls: EtcdTls | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if tls is not None and not endpoints.tls:
            raise ValueError(f"{endpoints}: client certificates need an etcds:// address")
        self.endpoints = endpoints
        self._ssl = (tls or EtcdTls()).context() if endpoints.tls else None
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._preferred = 0  # the endpoint that answered last: asked first next time

    def _order(self) -> list[tuple[int, str]]:
        urls = self.endpoints.urls()
        n = len(urls)
        return [((self._preferred + i) % n, urls[(self._preferred + i) % n]) for i in range(n)]

    # -- blocking ----------------------------------------------------------------------

    def call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path`` (``/v3/kv/txn``...) and return etcd's answer."""
        data = json.dumps(body).encode("utf-8")
        failures: list[str] = []
        sent = False
        for index, _url in self._order():
            host, port = self.endpoints.hosts[index]
            conn: http.client.HTTPConnection
            if self._ssl is not None:
                conn = http.client.HTTPSConnection(
                    host, port, timeout=self._timeout, context=self._ssl
                )
            else:
                conn = http.client.HTTPConnection(host, port, timeout=self._timeout)
            try:
                conn.request("POST", path, data, {"Content-Type": "application/json"})
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"{host_in_url(host)}:{port}: {_reason(exc)}")
                conn.close()
                continue
            try:
                reply = conn.getresponse().read()
            except TimeoutError:
                # Sent, unanswered: a hung etcd may still apply it when it resumes.
                sent = True
                failures.append(f"{host_in_url(host)}:{port}: no answer within {self._timeout:g} s")
                continue
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"{host_in_url(host)}:{port}: {_reason(exc)}")
                continue
            finally:
                conn.close()
            self._preferred = index
            return _check(_json(reply, path), path)
        raise EtcdUnavailable(f"cannot reach etcd ({'; '.join(failures)})", 14, maybe_done=sent)

    # -- asyncio -------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else False),
                trust_env=False,  # a proxy from the environment must not sit before etcd
            )
        return self._session

    async def acall(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``call`` without blocking the event loop."""
        failures: list[str] = []
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        for index, url in self._order():
            try:
                async with self._client().post(url + path, json=body, timeout=timeout) as resp:
                    reply = await resp.read()
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                failures.append(f"{url}: {_reason(exc)}")
                continue
            self._preferred = index
            return _check(_json(reply, path), path)
        raise EtcdUnavailable(f"cannot reach etcd ({'; '.join(failures)})", 14)

    async def watch(self, create_request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The ``result`` objects of one watch stream, as etcd sends them.

        Ends (returns) when etcd closes the stream; raises ``EtcdUnavailable``
        when no endpoint accepts it or the connection is lost mid-stream.
        """
        failures: list[str] = []
        # No total timeout: a quiet stream is fine; progress notifications keep it alive.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout)
        for index, url in self._order():
            try:
                resp = await self._client().post(
                    url + "/v3/watch",
                    json={"create_request": dict(create_request)},
                    timeout=timeout,
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                failures.append(f"{url}: {_reason(exc)}")
                continue
            self._preferred = index
            async with resp:
                try:
                    while True:
                        line = await resp.content.readline()
                        if not line:
                            return
                        if not line.strip():
                            continue
                        doc = _check(_json(line, "/v3/watch"), "/v3/watch")
                        result = doc.get("result")
                        if isinstance(result, dict):
                            yield result
                except (aiohttp.ClientError, OSError) as exc:
                    raise EtcdUnavailable(f"lost the watch on {url}: {_reason(exc)}", 14) from exc
        raise EtcdUnavailable(f"cannot reach etcd ({'; '.join(failures)})", 14)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _json(reply: bytes, path: str) -> Any:
    try:
        return json.loads(reply)
    except ValueError as exc:
        raise EtcdError(f"etcd answered {path} with something that is not JSON") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
