"""``pilotfish apply / get / delete`` against a live control plane in a background thread."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from click.testing import CliRunner, Result

from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.cli.main import cli
from pilotfish.cli.resources import resolve_kind
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.runtime.state import MeshState, write_state
from polling import poll

DEADLINE = 10.0

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  selector:
    app: reviews
  ports:
  - name: http
    port: 9080
"""
VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts:
  - reviews
  gateways:
  - mesh
  http:
  - route:
    - destination:
        host: reviews
        subset: {subset}
"""
DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: books
spec:
  host: reviews.default.svc.cluster.local
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"""


class LiveControlPlane:
    """A ControlPlane running on its own event loop in a daemon thread.

    Its API token is kept in ``token_file`` (next to ``config_dir``) unless
    ``settings`` say otherwise.
    """

    def __init__(self, config_dir: Path, **settings: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.token_file = config_dir.parent / "api-token"
        settings.setdefault("api_token_file", str(self.token_file))
        self.cp = ControlPlane(
            ControlPlaneSettings(
                config_paths=(str(config_dir),), xds_port=0, http_port=0, **settings
            )
        )
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> LiveControlPlane:
        self.thread.start()
        self._run(self.cp.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._run(self.cp.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(DEADLINE)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.cp.http_port}"

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(DEADLINE)

    def get(self, key: ResourceKey) -> Resource | None:
        """Read the store on its own loop (stores are not thread-safe)."""

        async def read() -> Resource | None:
            return self.cp.store.get(key)

        return asyncio.run_coroutine_threadsafe(read(), self.loop).result(DEADLINE)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveControlPlane]:
    served = tmp_path / "served"
    served.mkdir()
    with LiveControlPlane(served) as live:
        yield live


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    """A directory of user files: nested, multi-document, ``.yml``, and a file to skip."""
    root = tmp_path / "manifests"
    (root / "books").mkdir(parents=True)
    (root / "app.yaml").write_text(SERVICE + "---\n" + VS.format(subset="v1"))
    (root / "books" / "dr.yml").write_text(DR)
    (root / "README.md").write_text("not configuration\n")
    return root


def run(live: LiveControlPlane, *args: str) -> Result:
    argv = [*args, "--control-plane", live.url, "--token-file", str(live.token_file)]
    return CliRunner().invoke(cli, argv, catch_exceptions=False)


def test_apply_a_directory_then_reapply(live: LiveControlPlane, manifests: Path) -> None:
    result = run(live, "apply", "-f", str(manifests))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "services/reviews created",
        "virtualservices.networking.istio.io/reviews created",
        "destinationrules.networking.istio.io/reviews created",
    ]
    assert live.get(ResourceKey("DestinationRule", "books", "reviews")) is not None

    (manifests / "app.yaml").write_text(SERVICE + "---\n" + VS.format(subset="v2"))
    result = run(live, "apply", "-f", str(manifests))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "services/reviews unchanged",
        "virtualservices.networking.istio.io/reviews configured",
        "destinationrules.networking.istio.io/reviews unchanged",
    ]


def test_local_errors_stop_everything(live: LiveControlPlane, manifests: Path) -> None:
    bad = VS.format(subset="v1").replace("host: reviews", "hots: reviews")
    (manifests / "zz-bad.yaml").write_text(bad.replace("name: reviews", "name: broken"))
    result = run(live, "apply", "-f", str(manifests))
    assert result.exit_code == 1
    bad_file = str(manifests / "zz-bad.yaml")
    assert f"{bad_file}:14: VirtualService default/broken: spec.http[0].route[0]" in result.stderr
    assert "nothing was sent" in result.stderr
    assert result.stdout == ""
    assert live.get(ResourceKey("Service", "default", "reviews")) is None


def test_store_refusal_is_reported_at_the_object(live: LiveControlPlane, tmp_path: Path) -> None:
    # Valid and consistent, but the served directory already has the VirtualService
    # in a shared file, which the store never rewrites: nothing of the batch is written.
    served = live.cp.settings.config_paths[0]
    Path(served, "both.yaml").write_text(SERVICE + "---\n" + VS.format(subset="v1"))
    key = ResourceKey("VirtualService", "default", "reviews")
    _until(lambda: live.get(key) is not None)
    mine = tmp_path / "vs.yaml"
    mine.write_text(DR + "---\n" + VS.format(subset="v2"))
    result = run(live, "apply", "-f", str(mine))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{mine}:16: VirtualService default/reviews: cannot write ")
    assert "other object" in result.stderr
    assert "nothing was written" in result.stderr
    assert result.stdout == ""
    assert live.get(ResourceKey("DestinationRule", "books", "reviews")) is None


def test_get_table_yaml_json(live: LiveControlPlane, manifests: Path) -> None:
    assert run(live, "apply", "-f", str(manifests)).exit_code == 0

    result = run(live, "get", "vs")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "NAME      HOSTS     GATEWAYS",
        "reviews   reviews   mesh",
    ]
    result = run(live, "get", "DestinationRule", "-A")
    assert result.stdout.splitlines() == [
        "NAMESPACE   NAME      HOST",
        "books       reviews   reviews.default.svc.cluster.local",
    ]
    result = run(live, "get", "svc", "reviews")
    assert result.stdout.splitlines()[1].split() == ["reviews", "9080/TCP"]

    result = run(live, "get", "virtualservice", "reviews", "-o", "yaml")
    assert result.exit_code == 0
    [doc] = list(yaml.safe_load_all(result.stdout))
    # As written; only the server's generation is added, as Kubernetes adds it.
    written = yaml.safe_load(VS.format(subset="v1"))
    assert doc == {**written, "metadata": {**written["metadata"], "generation": 1}}

    result = run(live, "get", "services", "-A", "-o", "yaml")
    assert [d["kind"] for d in yaml.safe_load_all(result.stdout)] == ["Service"]

    result = run(live, "get", "destinationrules", "-n", "books", "-o", "json")
    assert '"kind": "DestinationRuleList"' in result.stdout


def test_get_errors(live: LiveControlPlane) -> None:
    result = run(live, "get", "vs", "missing")
    assert result.exit_code == 1
    assert "not found" in result.stderr
    result = run(live, "get", "gw")
    assert result.exit_code == 0
    assert "No resources found in default namespace." in result.stderr
    result = CliRunner().invoke(cli, ["get", "widgets", "--control-plane", live.url])
    assert result.exit_code == 2
    assert "unknown resource type 'widgets'" in result.output


def test_delete_by_file_and_by_name(live: LiveControlPlane, manifests: Path) -> None:
    assert run(live, "apply", "-f", str(manifests)).exit_code == 0

    result = run(live, "delete", "-f", str(manifests / "books"))
    assert result.exit_code == 0, result.output
    assert result.stdout == "destinationrules.networking.istio.io/reviews deleted\n"
    result = run(live, "delete", "-f", str(manifests / "books"))
    assert result.exit_code == 1
    assert result.stdout == "destinationrules.networking.istio.io/reviews not found\n"
    result = run(live, "delete", "--ignore-not-found", "-f", str(manifests / "books"))
    assert result.exit_code == 0

    result = run(live, "delete", "vs", "reviews", "-n", "default")
    assert result.exit_code == 0
    assert result.stdout == "virtualservices.networking.istio.io/reviews deleted\n"
    assert live.get(ResourceKey("VirtualService", "default", "reviews")) is None
    assert live.get(ResourceKey("Service", "default", "reviews")) is not None


def test_token_from_the_environment(
    tmp_path: Path, manifests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "guarded"
    served.mkdir()
    monkeypatch.chdir(tmp_path)  # no .pilotfish/api-token here
    with LiveControlPlane(served, api_token="s3cret") as live:
        args = ["apply", "-f", str(manifests), "--control-plane", live.url]
        runner = CliRunner()
        refused = runner.invoke(cli, args, env={"PILOTFISH_API_TOKEN": None})
        assert refused.exit_code == 1
        assert "no API token was found" in refused.stderr
        assert "pass --token-file or run from the mesh's directory" in refused.stderr
        wrong = runner.invoke(cli, args, env={"PILOTFISH_API_TOKEN": "guessed"})
        assert wrong.exit_code == 1
        assert f"the control plane at {live.url} refused the API token" in wrong.stderr
        assert "guessed" not in wrong.output
        malformed = runner.invoke(cli, args, env={"PILOTFISH_API_TOKEN": "two words"})
        assert malformed.exit_code == 1
        assert "$PILOTFISH_API_TOKEN: invalid API token" in malformed.stderr
        accepted = runner.invoke(cli, args, env={"PILOTFISH_API_TOKEN": "s3cret"})
        assert accepted.exit_code == 0, accepted.output
        assert not live.token_file.exists()  # an explicit token wins over the file


def test_unreachable_control_plane() -> None:
    # A port the kernel just handed out and that nobody listens on any more.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = CliRunner().invoke(
        cli, ["get", "vs", "--control-plane", url], env={"PILOTFISH_API_TOKEN": "any"}
    )
    assert result.exit_code == 1
    assert "cannot reach the control plane" in result.output


def _until(check: Callable[[], bool]) -> None:
    poll(check, "the condition", DEADLINE, interval=0.02, ignore=())


def test_warnings_are_printed_and_the_object_written(
    live: LiveControlPlane, tmp_path: Path
) -> None:
    alone = tmp_path / "dr.yaml"
    alone.write_text(DR.replace("host: reviews.default", "host: nowhere.default"))
    result = run(live, "apply", "-f", str(alone))
    assert result.exit_code == 0, result.output  # Istio's level for IST0174 is Warning
    assert result.stdout == "destinationrules.networking.istio.io/reviews created\n"
    assert result.stderr == (
        f"Warning [IST0174] (DestinationRule books/reviews {alone}:7) spec.host: "
        "host 'nowhere.default.svc.cluster.local' matches no Service or ServiceEntry\n"
    )
    assert live.get(ResourceKey("DestinationRule", "books", "reviews")) is not None


def test_error_findings_refuse_the_apply(live: LiveControlPlane, tmp_path: Path) -> None:
    mine = tmp_path / "app.yaml"
    mine.write_text(SERVICE + "---\n" + DR + "---\n" + VS.format(subset="v9"))
    result = run(live, "apply", "-f", str(mine))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error [IST0101] (VirtualService default/reviews {mine}:41) "
        "spec.http[0].route[0].destination.subset: subset 'v9' is not defined by any "
        "DestinationRule for 'reviews.default.svc.cluster.local'",
        "apply refused: 1 Error-level finding in the applied objects; nothing was written "
        "(--force writes anyway)",
    ]
    # Nothing of the file was written, not even the objects without findings.
    assert live.get(ResourceKey("Service", "default", "reviews")) is None

    result = run(live, "apply", "--dry-run", "-f", str(mine))
    assert result.exit_code == 1
    assert "apply refused" in result.stderr

    result = run(live, "apply", "--force", "-f", str(mine))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "services/reviews created",
        "destinationrules.networking.istio.io/reviews created",
        "virtualservices.networking.istio.io/reviews created",
    ]
    assert "Error [IST0101] (VirtualService default/reviews" in result.stderr
    assert "written despite 1 Error-level finding (--force)" in result.stderr
    assert live.get(ResourceKey("VirtualService", "default", "reviews")) is not None


def test_dry_run_reports_and_writes_nothing(live: LiveControlPlane, manifests: Path) -> None:
    result = run(live, "apply", "--dry-run", "-f", str(manifests))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "services/reviews created (server dry run)",
        "virtualservices.networking.istio.io/reviews created (server dry run)",
        "destinationrules.networking.istio.io/reviews created (server dry run)",
    ]
    assert live.get(ResourceKey("Service", "default", "reviews")) is None
    assert list(Path(live.cp.settings.config_paths[0]).rglob("*.yaml")) == []


def test_broken_stored_objects_do_not_block_an_apply(
    live: LiveControlPlane, manifests: Path
) -> None:
    # Written by hand into the served directory: a route to a subset nobody defines.
    served = live.cp.settings.config_paths[0]
    broken = VS.format(subset="gone").replace("name: reviews\n", "name: old\n", 1)
    broken = broken.replace("  - reviews\n", "  - old\n")
    Path(served, "old.yaml").write_text(broken)
    _until(lambda: live.get(ResourceKey("VirtualService", "default", "old")) is not None)
    result = run(live, "apply", "-f", str(manifests))
    assert result.exit_code == 0, result.output
    assert "old" not in result.stderr


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("vs", "VirtualService"),
        ("VirtualService", "VirtualService"),
        ("virtualservice", "VirtualService"),
        ("virtualservices", "VirtualService"),
        ("dr", "DestinationRule"),
        ("gw", "Gateway"),
        ("se", "ServiceEntry"),
        ("we", "WorkloadEntry"),
        ("svc", "Service"),
        ("Services", "Service"),
    ],
)
def test_kind_words(word: str, kind: str) -> None:
    assert resolve_kind(word) == kind


async def _no_pods(request: web.Request) -> web.Response:
    return web.json_response({"phase": "ready", "mode": "explicit", "pods": []})


def test_status_finds_the_token_in_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``status`` and ``describe`` read ``<state-dir>/api-token``, as ``pilotfish up`` writes it."""
    state_dir = tmp_path / "state"
    (state_dir / "config").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # not the state dir: --state-dir is what counts
    live = LiveControlPlane(state_dir / "config")
    assert live.token_file == state_dir / "api-token"
    # The runtime's route, added as runtime/mesh.py does: behind the token too.
    live.cp.add_route("GET", "/runtime/pods", _no_pods)
    with live:
        state = MeshState(pid=os.getpid(), mode="explicit", phase="ready", control_plane=live.url)
        write_state(state_dir / "state.json", state)
        # An HTTP proxy in the environment (apps of explicit mode have one) never
        # sees the token: the CLI connects directly (this proxy does not exist).
        proxy = {"HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
        runner = CliRunner(
            env={"PILOTFISH_API_TOKEN": None, "NO_PROXY": None, "no_proxy": None, **proxy}
        )
        result = runner.invoke(cli, ["status", "--state-dir", str(state_dir), "-o", "json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["pods"] == []
        result = runner.invoke(cli, ["describe", "nope", "--state-dir", str(state_dir)])
        assert "no pod named 'nope'" in result.output  # it got the pod list
        wrong = tmp_path / "wrong-token"
        wrong.write_text("not-the-token\n")
        args = ["status", "--state-dir", str(state_dir), "--token-file", str(wrong)]
        result = runner.invoke(cli, args)
        assert result.exit_code == 1
        assert f"refused the API token from {wrong}" in result.output


ISTIO_BOOKINFO = (
    Path(__file__).resolve().parents[2]
    / "testdata"
    / "istio-samples"
    / "bookinfo"
    / "platform"
    / "kube"
    / "bookinfo.yaml"
)
ARGO_APP = """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: bookinfo
  namespace: argocd
spec:
  project: default
"""


def test_apply_kubernetes_manifests_and_skip_foreign_kinds(
    live: LiveControlPlane, tmp_path: Path
) -> None:
    (tmp_path / "argo.yaml").write_text(ARGO_APP)
    result = run(live, "apply", "-f", str(ISTIO_BOOKINFO), "-f", str(tmp_path / "argo.yaml"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "services/details created",
        "serviceaccounts/bookinfo-details created",
        "deployments.apps/details-v1 created",
    ]
    assert len(lines) == 14  # 4 Services, 4 ServiceAccounts, 6 Deployments
    assert (
        f"{tmp_path / 'argo.yaml'}:1: Application argocd/bookinfo: info: "
        "Application (argoproj.io/v1alpha1) is not a mesh kind; ignored"
    ) in result.stderr
    stored = live.get(ResourceKey("Deployment", "default", "reviews-v2"))
    assert stored is not None and stored.raw["spec"]["template"]["metadata"]["labels"] == {
        "app": "reviews",
        "version": "v2",
    }
    got = run(live, "get", "deploy", "reviews-v2", "-o", "yaml")
    assert got.exit_code == 0, got.output
    assert yaml.safe_load(got.stdout)["spec"]["replicas"] == 1
