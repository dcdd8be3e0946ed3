"""Istio's Bookinfo sample application, in Python (aiohttp).

Four services, one module each, run as
``python -m pilotfish.samples.bookinfo.<service> [--version vN]``:

- ``productpage`` calls ``details`` and ``reviews`` and renders the page;
- ``details`` answers book details;
- ``reviews`` (v1, v2, v3) answers two reviews; v2 and v3 call ``ratings``
  and colour the stars black (v2) or red (v3);
- ``ratings`` answers the reviewers' stars.

Each listens on ``0.0.0.0:$PORT`` (default 9080) and reaches its peers by
plain service name (``http://details:9080``), overridable by ``DETAILS_URL``,
``REVIEWS_URL`` and ``RATINGS_URL``. Outbound calls honour ``HTTP_PROXY``
and forward Istio's tracing headers and ``end-user``, as the originals do.
"""

from __future__ import annotations

__all__: list[str] = []
