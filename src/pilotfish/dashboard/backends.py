"""HTTP clients for what the dashboard reads: Prometheus, the trace store, the control plane."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["BackendError", "Backends"]


class BackendError(Exception):
    """A backend could not be reached or answered with an error; the message says which."""


class Backends:
    def __init__(
        self, prometheus: str, tracing: str, control_plane: str, token_file: Path | None
    ) -> None:
        self.prometheus = prometheus.rstrip("/")
        self.tracing = tracing.rstrip("/")
        self.control_plane = control_plane.rstrip("/")
        self._token_file = token_file
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._session

    def _token(self) -> str | None:
        # Read on every call: the runtime may rotate the file while the dashboard runs.
        if self._token_file is None:
            return None
        try:
            return self._token_file.read_text().strip() or None
        except OSError:
            return None

    async def _get(
        self,
        name: str,
        url: str,
        params: Mapping[str, str] | Sequence[tuple[str, str]],
        auth: bool,
    ) -> Any:
        headers = {}
        token = self._token() if auth else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._client().get(url, params=params, headers=headers) as resp:
                if resp.status >= 400:
                    text = (await resp.text())[:300]
                    raise BackendError(f"{name} answered {resp.status} for {url}: {text}")
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendError(f"{name} at {url} is unreachable: {exc}") from None

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """The ``result`` list of an instant query."""
        body = await self._get(
            "Prometheus", self.prometheus + "/api/v1/query", {"query": promql}, auth=False
        )
        if body.get("status") != "success":
            raise BackendError(f"Prometheus rejected {promql!r}: {body.get('error')}")
        return list(body["data"]["result"])

    async def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        params = {"query": promql, "start": str(start), "end": str(end), "step": str(step)}
        body = await self._get(
            "Prometheus", self.prometheus + "/api/v1/query_range", params, auth=False
        )
        if body.get("status") != "success":
            raise BackendError(f"Prometheus rejected {promql!r}: {body.get('error')}")
        return list(body["data"]["result"])

    async def zipkin(self, path: str, params: dict[str, str] | None = None) -> Any:
        return await self._get("trace store", self.tracing + path, params or {}, auth=False)

    async def control(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        """GET ``path`` of the control plane's API (with its token); ``params`` may
        repeat a name (``header=...`` of ``/debug/explain``)."""
        return await self._get("control plane", self.control_plane + path, params, auth=True)
