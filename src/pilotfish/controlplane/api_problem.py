"""What every handler of the configuration API shares: errors as JSON, bounded bodies."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from pilotfish.api.diagnostics import Diagnostic

__all__ = ["Problem", "read_body"]


class Problem(Exception):
    """An HTTP error with a JSON body ``{"error": ..., "errors": [...], "warnings": [...]}``."""

    def __init__(self, status: int, message: str, diagnostics: Sequence[Diagnostic] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.diagnostics = list(diagnostics)

    def response(self) -> web.Response:
        return web.json_response(
            {
                "error": str(self),
                "errors": [d.to_json() for d in self.diagnostics if d.is_error],
                "warnings": [d.to_json() for d in self.diagnostics if not d.is_error],
            },
            status=self.status,
        )


async def read_body(request: web.Request, max_bytes: int) -> str:
    """The body as text; 413 as soon as it proves longer than ``max_bytes``."""
    too_large = Problem(413, f"the request body is larger than {max_bytes} bytes (limit)")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    body = bytearray()
    while chunk := await request.content.read(64 * 1024):
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    try:
        return body.decode(request.charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        raise Problem(400, "the request body is not UTF-8 text") from None
