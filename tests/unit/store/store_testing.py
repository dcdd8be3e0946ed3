"""Helpers for the store tests: realistic Istio documents and polling with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource
from pilotfish.store import FileStore
from polling import apoll

DEADLINE = 5.0  # seconds; generous for a loaded 2-core machine, never waited out on success

SERVICE_REVIEWS = """\
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: default
  labels:
    app: reviews
spec:
  selector:
    app: reviews
  ports:
  - name: http
    port: 9080
"""

DESTINATION_RULE_REVIEWS = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: default
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"""


def virtual_service(name: str = "reviews", subset: str = "v1", namespace: str = "default") -> str:
    """A VirtualService routing all traffic for ``name`` to one subset."""
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
  namespace: {namespace}
spec:
  hosts:
  - {name}
  http:
  - route:
    - destination:
        host: {name}
        subset: {subset}
"""


def docs(*texts: str) -> str:
    """Join YAML documents into one multi-document file."""
    return "---\n".join(texts)


def resource(text: str) -> Resource:
    """The single resource ``text`` defines (the test fails if it does not load)."""
    result = load_text(text, "<test>")
    assert result.ok, [d.format() for d in result.diagnostics]
    assert len(result.resources) == 1
    return result.resources[0]


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` until true, failing after ``DEADLINE`` seconds."""
    await apoll(predicate, what, DEADLINE, interval=0.005, ignore=())


async def next_revision(store: FileStore, after: int) -> int:
    """The first revision after ``after``, within the deadline."""
    return await asyncio.wait_for(store.wait_for_change(after), DEADLINE)


async def settle(store: FileStore, polls: int = 3) -> None:
    """Let the watcher complete ``polls`` more scans (to show something did NOT happen)."""
    target = store.scans + polls
    await wait_until(lambda: store.scans >= target, f"{polls} polls")


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first occurrence of ``needle`` in ``text``."""
    index = text.index(needle)
    return text.count("\n", 0, index) + 1
