"""The real ``pilotfish`` commands find the API token without the user passing it.

``pilotfish control-plane`` runs as a process on free loopback ports from a
directory of its own, as a user starts it; ``pilotfish apply/get/...`` run as
processes too, with no token in their environment.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pilotfish.runtime.ports import free_port as _free_port
from polling import poll

PILOTFISH = [sys.executable, "-m", "pilotfish.cli.main"]
DEADLINE = 30.0

# The Service too: a route to a host nobody defines would be refused (IST0101).
VS = """\
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTFISH_")}
    env["COLUMNS"] = "200"
    return env


def _status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@contextmanager
def _control_plane(work: Path, http_port: int, log: Path) -> Iterator[str]:
    """``pilotfish control-plane`` started in ``work``; yields its API URL once ready."""
    url = f"http://127.0.0.1:{http_port}"
    argv = [*PILOTFISH, "control-plane", "--config", "config", "--xds-port", str(_free_port())]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*argv, "--http-port", str(http_port)],
            cwd=work,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            return _status(url + "/ready") == 200  # liveness needs no token

        poll(ready, "the control plane to be ready", DEADLINE, interval=0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(DEADLINE)


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PILOTFISH, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=60
    )


def test_cli_uses_the_token_of_the_control_plane_started_here(tmp_path: Path) -> None:
    work = tmp_path / "mesh"
    (work / "config").mkdir(parents=True)
    manifest = tmp_path / "vs.yaml"
    manifest.write_text(VS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    log = tmp_path / "control-plane.log"
    http_port = _free_port()
    token_file = work / ".pilotfish" / "api-token"

    with _control_plane(work, http_port, log) as url:
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
        token = token_file.read_text().strip()
        assert _status(url + "/api/v1/services") == 401
        assert _status(url + "/debug/configz") == 401
        assert _status(url + "/metrics") == 200

        cp = ("--control-plane", url)
        applied = _cli(work, "apply", "-f", str(manifest), *cp)
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout == (
            "services/reviews created\nvirtualservices.networking.istio.io/reviews created\n"
        )
        got = _cli(work, "get", "vs", "reviews", "-o", "json", *cp)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["spec"]["hosts"] == ["reviews"]
        assert _cli(work, "proxy-status", *cp).returncode == 0
        assert _cli(work, "get", "meshconfig", *cp).returncode == 0

        # From another directory nothing is found: a clear error, no traceback.
        lost = _cli(elsewhere, "get", "vs", *cp)
        assert lost.returncode == 1
        assert "no API token was found" in lost.stderr
        assert "pass --token-file or run from the mesh's directory" in lost.stderr
        assert "Traceback" not in lost.stderr
        found = _cli(elsewhere, "get", "vs", *cp, "--token-file", str(token_file))
        assert found.returncode == 0, found.stderr
        missing = _cli(elsewhere, "get", "vs", *cp, "--token-file", "nope")
        assert missing.returncode == 1
        assert "API token file nope does not exist" in missing.stderr

        deleted = _cli(work, "delete", "vs", "reviews", *cp)
        assert deleted.returncode == 0, deleted.stderr

    # A restart reuses the token: the same file, and clients keep working.
    with _control_plane(work, http_port, log) as url:
        assert token_file.read_text().strip() == token
        assert _status(url + "/debug/configz", token) == 200
        again = _cli(work, "get", "vs", "--control-plane", url)
        assert again.returncode == 0, again.stderr
    output = log.read_text()
    assert str(Path(".pilotfish") / "api-token") in output
    assert token not in output
