"""A small container image built on this machine for the podman tests (nothing is pulled).

The image is a root filesystem made from the host: the interpreter running
the tests, the shared libraries ``ldd`` lists for it and for the extension
modules it loads, the standard-library files an HTTP echo server imports,
and the server itself (``ECHO_APP``). ``podman import`` turns the tarball
into an image under ``localhost/``; tests remove it when done.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

__all__ = ["ECHO_APP", "build_echo_image", "containers_of", "remove_image", "require_podman"]

# Answers every GET with what the pod looks like from inside the container.
ECHO_APP = """
import http.server, json, os, signal, sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8080


class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "pod": os.environ.get("POD_NAME"),
            "greeting": os.environ.get("GREETING"),
            "uid": os.getuid(),
            "cwd": os.getcwd(),
            "path": self.path,
            "hostname": open("/etc/hostname").read().strip(),
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("echo-container request", self.path, flush=True)


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"echo-container listening on {PORT} as uid {os.getuid()}", flush=True)
http.server.ThreadingHTTPServer(("", PORT), Echo).serve_forever()
"""

_IMPORTS = "import http.server, json, os, signal, sys, socketserver, encodings.idna"


def require_podman() -> str:
    """podman's path; skips the test when it is missing (``make setup`` installs it as root)."""
    if os.geteuid() != 0:
        pytest.skip("podman containers in pod namespaces need root; CI runs as root")
    path = shutil.which("podman")
    if path is None:
        pytest.skip("podman is not installed (make setup installs it when run as root)")
    return path


def _loaded_files(python: str) -> set[str]:
    listing = "for m in list(sys.modules.values()):\n    print(getattr(m, '__file__', ''))\n"
    code = f"{_IMPORTS}\n{listing}"
    out = subprocess.run([python, "-S", "-c", code], capture_output=True, text=True, check=True)
    return {line for line in out.stdout.split() if line}


def _libraries(path: str) -> set[str]:
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=False).stdout
    libs: set[str] = set()
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            libs.add(parts[2])
        elif parts and parts[0].startswith("/"):
            libs.add(parts[0])  # the dynamic loader
    return libs


def _rootfs_tar(dest: Path) -> Path:
    python = os.path.realpath(sys.executable)
    files = {python, *_loaded_files(python)}
    for f in list(files):
        if f == python or f.endswith(".so"):
            files |= _libraries(f)
    tar_path = dest / "echo-rootfs.tar"
    with tarfile.open(tar_path, "w") as tar:
        for f in sorted(files):
            # Under the name the loader and the interpreter look for, with the target's bytes.
            tar.add(os.path.realpath(f), arcname=f.lstrip("/"), recursive=False)
        for name, mode in (("tmp", 0o1777), ("app", 0o755), ("etc", 0o755)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        data = ECHO_APP.encode()
        info = tarfile.TarInfo("app/echo.py")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("usr/bin/python3")
        link.type, link.linkname = tarfile.SYMTYPE, python
        tar.addfile(link)
    return tar_path


def build_echo_image(podman: str, tag: str, workdir: Path) -> str:
    """Build the echo image as ``tag`` (its default command serves on 8080); returns ``tag``."""
    tar_path = _rootfs_tar(workdir)
    subprocess.run(
        [
            podman,
            "import",
            "--change",
            'CMD ["/usr/bin/python3", "-S", "-u", "/app/echo.py"]',
            str(tar_path),
            tag,
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    tar_path.unlink()
    return tag


def remove_image(podman: str, tag: str) -> None:
    subprocess.run([podman, "rmi", "--force", tag], capture_output=True, check=False, timeout=60)


def containers_of(podman: str, state_dir: Path, what: str = "{{.Names}}") -> list[str]:
    """Names (or ``what``) of the containers, in any state, of the mesh of ``state_dir``."""
    out = subprocess.run(
        [
            podman,
            "ps",
            "--all",
            "--filter",
            f"label=io.pilotfish.state-dir={state_dir.resolve()}",
            "--format",
            what,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.split()
