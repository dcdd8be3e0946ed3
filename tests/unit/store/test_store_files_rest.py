"""How long the file store's watcher rests between polls: by the scan's CPU time only."""

from __future__ import annotations

import time
from pathlib import Path

from pilotfish.api import loader
from pilotfish.api.loader import LoadResult
from pilotfish.store._reading import rest_after
from pilotfish.store.files import FileStore

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: svc-{i}, namespace: default}}
spec:
  selector: {{app: svc-{i}}}
  ports: [{{name: http, port: 9080}}]
"""
PARSE_CPU_S = 0.05


def _slow_loader(text: str, filename: str) -> LoadResult:
    """The standard loader after burning PARSE_CPU_S of this thread's CPU."""
    began = time.thread_time()
    while time.thread_time() - began < PARSE_CPU_S:
        pass
    return loader.load_text(text, filename)


def test_rest_is_the_poll_interval_unless_the_scan_is_costly() -> None:
    assert rest_after(0.1, 0.001) == 0.1
    assert rest_after(0.1, 0.5) == 2.0


async def test_parsing_changed_files_does_not_lengthen_the_rest(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"svc-{i}.yaml").write_text(SERVICE.format(i=i))
    store = FileStore(tmp_path, load_text=_slow_loader)
    began = time.process_time()
    assert await store.poll()
    assert len(store.list("Service")) == 4
    assert time.process_time() - began >= 4 * PARSE_CPU_S  # the parses did cost that much
    # ...but the rest follows the scan alone (a few stats), not those parses.
    assert store._last_scan_cpu_s < PARSE_CPU_S
    assert rest_after(0.1, store._last_scan_cpu_s) < 4 * PARSE_CPU_S
