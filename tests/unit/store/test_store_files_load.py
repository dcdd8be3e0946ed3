"""FileStore: what one scan makes of a tree of files (no watching involved)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from store_testing import (
    DESTINATION_RULE_REVIEWS,
    SERVICE_REVIEWS,
    docs,
    line_of,
    virtual_service,
)

from pilotfish.api.diagnostics import Severity
from pilotfish.api.loader import LoadResult, load_text
from pilotfish.api.resource import ResourceKey
from pilotfish.store import FileStore

VS = ResourceKey("VirtualService", "default", "reviews")
DR = ResourceKey("DestinationRule", "default", "reviews")
SVC = ResourceKey("Service", "default", "reviews")


async def test_initial_load_reads_the_tree_recursively(store: FileStore, config_dir: Path) -> None:
    (config_dir / "reviews.yaml").write_text(docs(virtual_service(), DESTINATION_RULE_REVIEWS))
    (config_dir / "services").mkdir()
    (config_dir / "services" / "reviews.yml").write_text(SERVICE_REVIEWS)
    (config_dir / "ratings.json").write_text(
        json.dumps(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": "ratings"},
                "spec": {
                    "hosts": ["ratings"],
                    "http": [{"route": [{"destination": {"host": "ratings"}}]}],
                },
            }
        )
    )
    await store.start()
    assert store.revision == 1  # the whole first load is one change
    assert [str(r.key) for r in store.list()] == [
        "DestinationRule default/reviews",
        "Service default/reviews",
        "VirtualService default/ratings",
        "VirtualService default/reviews",
    ]
    assert store.diagnostics() == []
    served = store.get(SVC)
    assert served is not None and served.source is not None
    assert served.source.file == str(config_dir / "services" / "reviews.yml")
    assert store.origin(VS) == str(config_dir / "reviews.yaml")


@pytest.mark.parametrize(
    "name",
    [
        ".hidden.yaml",
        "reviews.yaml~",
        ".reviews.yaml.swp",
        ".#reviews.yaml",
        "#reviews.yaml#",
        "notes.txt",
        "reviews.yaml.bak",
    ],
)
async def test_hidden_and_editor_files_are_skipped(
    store: FileStore, config_dir: Path, name: str
) -> None:
    (config_dir / name).write_text(virtual_service())
    (config_dir / ".git").mkdir()
    (config_dir / ".git" / "reviews.yaml").write_text(virtual_service())
    await store.start()
    assert store.list() == []
    assert store.files_status() == []


async def test_single_files_and_precedence_across_paths(tmp_path: Path) -> None:
    first = tmp_path / "override.yaml"
    first.write_text(virtual_service(subset="v2"))
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.yaml").write_text(virtual_service(subset="v1"))
    store = FileStore([first, tree])
    store.rescan()
    served = store.get(VS)
    assert served is not None
    assert served.raw["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v2"
    [dup] = store.diagnostics()
    assert dup.source is not None and dup.source.file == str(tree / "a.yaml")


async def test_duplicate_in_a_later_file_is_reported_and_not_applied(
    store: FileStore, config_dir: Path
) -> None:
    (config_dir / "a.yaml").write_text(virtual_service(subset="v1"))
    b_text = docs(SERVICE_REVIEWS, virtual_service(subset="v2"))
    (config_dir / "b.yaml").write_text(b_text)
    await store.start()
    served = store.get(VS)
    assert served is not None and served.source is not None
    assert served.source.file == str(config_dir / "a.yaml")
    assert store.get(SVC) is not None  # the rest of b.yaml still counts
    [dup] = store.diagnostics()
    assert dup.severity is Severity.ERROR
    assert (dup.kind, dup.namespace, dup.name) == ("VirtualService", "default", "reviews")
    assert dup.source is not None
    assert (dup.source.file, dup.source.line) == (
        str(config_dir / "b.yaml"),
        line_of(b_text, "apiVersion: networking"),
    )
    assert str(config_dir / "a.yaml") in dup.message
    assert str(config_dir / "b.yaml") in dup.message
    status = {entry["file"]: entry for entry in store.files_status()}
    assert status[str(config_dir / "b.yaml")]["ignoredDuplicates"] == [str(VS)]


async def test_never_good_file_contributes_nothing(store: FileStore, config_dir: Path) -> None:
    (config_dir / "good.yaml").write_text(SERVICE_REVIEWS)
    # The first document is fine, the second has an unknown field: the file fails as a whole.
    bad = docs(DESTINATION_RULE_REVIEWS, virtual_service().replace("subset:", "subsett:"))
    (config_dir / "bad.yaml").write_text(bad)
    await store.start()
    assert [str(r.key) for r in store.list()] == [str(SVC)]
    errors = [d for d in store.diagnostics() if d.is_error]
    assert errors, "the broken file must be reported"
    assert all(
        d.source is not None and d.source.file == str(config_dir / "bad.yaml") for d in errors
    )
    assert errors[0].source is not None and errors[0].source.line == line_of(bad, "subsett:")
    status = {entry["file"]: entry for entry in store.files_status()}
    assert status[str(config_dir / "bad.yaml")]["state"] == "never-loaded"
    assert status[str(config_dir / "bad.yaml")]["resources"] == []
    assert status[str(config_dir / "good.yaml")]["state"] == "ok"
    assert status[str(config_dir / "good.yaml")]["resources"] == [str(SVC)]


async def test_diagnostics_are_in_file_then_line_order(tmp_path: Path) -> None:
    broken = docs(
        SERVICE_REVIEWS.replace("  selector:", "  bogus: 1\n  selector:"),
        virtual_service("ratings").replace("subset:", "subsett:"),
    )
    for name in ("b.yaml", "a.yaml", "c/z.yaml"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(broken)
    (tmp_path / "c" / "a.yaml").write_text(docs(DESTINATION_RULE_REVIEWS, virtual_service()))
    (tmp_path / "c" / "b.yaml").write_text(docs(SERVICE_REVIEWS, virtual_service()))
    store = FileStore(tmp_path)
    store.rescan()
    seen = [(d.source.file, d.source.line) for d in store.diagnostics() if d.source]
    files = [str(tmp_path / n) for n in ("a.yaml", "b.yaml", "c/a.yaml", "c/b.yaml", "c/z.yaml")]
    bogus, subsett = line_of(broken, "bogus"), line_of(broken, "subsett")
    duplicate = line_of(docs(SERVICE_REVIEWS, virtual_service()), "apiVersion: networking")
    assert seen == [
        (files[0], bogus),
        (files[0], subsett),
        (files[1], bogus),
        (files[1], subsett),
        (files[3], duplicate),
        (files[4], bogus),
        (files[4], subsett),
    ]


async def test_missing_path_is_a_warning(tmp_path: Path) -> None:
    store = FileStore([tmp_path / "absent"])
    store.rescan()
    [warning] = store.diagnostics()
    assert warning.severity is Severity.WARNING
    assert "does not exist" in warning.message
    assert store.list() == [] and store.revision == 0


async def test_unchanged_files_are_not_read_again(config_dir: Path) -> None:
    for i in range(20):
        (config_dir / f"vs-{i}.yaml").write_text(virtual_service(f"svc-{i}"))
    loads: list[str] = []

    def counting_loader(text: str, filename: str) -> LoadResult:
        loads.append(filename)
        return load_text(text, filename)

    store = FileStore(config_dir, load_text=counting_loader)
    assert await store.poll()
    assert len(loads) == 20
    loads.clear()
    # Let the files age past the racy window, then poll: stat only, nothing parsed.
    _age_all(config_dir)
    await store.poll()
    await store.poll()
    assert loads == []
    assert store.revision == 1


def _age_all(directory: Path) -> None:
    for path in directory.rglob("*"):
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10_000_000_000))


async def test_a_loader_crash_fails_only_that_file(config_dir: Path) -> None:
    def fragile_loader(text: str, filename: str) -> LoadResult:
        if "crash-me" in text:
            raise RuntimeError("boom")
        return load_text(text, filename)

    (config_dir / "a.yaml").write_text("# crash-me\n" + virtual_service("ratings"))
    (config_dir / "b.yaml").write_text(virtual_service())
    store = FileStore(config_dir, load_text=fragile_loader)
    assert await store.poll()
    assert [str(r.key) for r in store.list()] == [str(VS)]
    [error] = store.diagnostics()
    assert error.is_error and "boom" in error.message
    assert error.source is not None and error.source.file == str(config_dir / "a.yaml")


async def test_istio_bookinfo_manifest_is_served_as_written(tmp_path: Path) -> None:
    # What ``pilotfish up`` reads: Istio's bookinfo.yaml, unchanged, next to a foreign kind.
    bookinfo = (
        Path(__file__).resolve().parents[2]
        / "testdata/istio-samples/bookinfo/platform/kube/bookinfo.yaml"
    )
    argo = tmp_path / "argo.yaml"
    argo.write_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: b}\nspec: {}\n"
    )
    store = FileStore([bookinfo, argo])
    store.rescan()
    kinds = sorted({r.kind for r in store.list()})
    assert kinds == ["Deployment", "Service", "ServiceAccount"]
    assert len(store.list(kind="Deployment")) == 6
    assert [d.severity.value for d in store.diagnostics()] == ["info"]
