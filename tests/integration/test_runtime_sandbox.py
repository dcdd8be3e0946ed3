"""The pod sandbox for real (root): a private mount namespace, an unprivileged user, exec.

Runs the launcher as the runtime does and checks, from inside, what a pod process
can and cannot do: the state directory is empty, its own directory is there,
Python still runs from a home directory the user could not enter, no
capabilities, no_new_privs, no way into the proxy group, and the host's view is
untouched afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pilotfish.runtime.isolation import runtime_reveals
from pilotfish.runtime.sandbox import SandboxSpec, sandbox_argv

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the pod sandbox needs root (mount namespaces); CI runs as root"
)

PROBE = r"""
import json, os, socket
out = {"ids": [os.getuid(), os.getgid(), os.getgroups()]}
def read(path):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError as exc:
        return "ERR " + exc.strerror
out["secret"] = read(os.environ["STATE"] + "/secret")
out["own"] = read(os.environ["STATE"] + "/pods/p/proxy/own")
out["state_listing"] = sorted(os.listdir(os.environ["STATE"]))
out["tmp"] = sorted(os.listdir("/tmp"))
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
out["caps"] = status["CapEff"].strip()
out["no_new_privs"] = status["NoNewPrivs"].strip()
try:
    os.setgid(0 if os.getgid() == 1337 else 1337)  # root's group, or the proxy's
    out["setgid"] = "ok"
except OSError as exc:
    out["setgid"] = exc.strerror
try:
    socket.socket().bind(("127.0.0.1", 1))
    out["low_port"] = "bound"
except OSError as exc:
    out["low_port"] = exc.strerror
print(json.dumps(out))
"""


def _state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    (state / "pods" / "p" / "proxy").mkdir(parents=True)
    (state / "secret").write_text("root key")
    (state / "pods" / "p" / "proxy" / "own").write_text("mine")
    os.chown(state / "pods" / "p" / "proxy", 1337, 1337)
    os.chown(state / "pods" / "p" / "proxy" / "own", 1337, 1337)
    (state / "pods" / "p" / "proxy").chmod(0o700)
    state.chmod(0o700)
    return state


def _run(spec: SandboxSpec, state: Path) -> dict[str, object]:
    argv = sandbox_argv(sys.executable, spec, [sys.executable, "-c", PROBE])
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, env={**os.environ, "STATE": str(state)}
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_proxy_sandbox_sees_its_own_directory_only(tmp_path: Path) -> None:
    state = _state(tmp_path)
    spec = SandboxSpec(
        uid=1337,
        gid=1337,
        masks=(str(state),),
        reveals=(*runtime_reveals(), str(state / "pods" / "p" / "proxy")),
        mask_tmp=True,
    )
    out = _run(spec, state)
    assert out["ids"] == [1337, 1337, []]
    assert out["secret"] == "ERR No such file or directory"
    assert out["own"] == "mine"
    assert out["state_listing"] == ["pods"]
    # A private /tmp: only the path down to the masked state directory, nothing of the host's.
    # A private /tmp: only the paths down to what is masked or revealed below /tmp (the
    # state directory; the project itself when it was cloned there), nothing else.
    paths = (str(state), *spec.reveals)
    skeleton = sorted({p.split("/")[2] for p in paths if p.startswith("/tmp/")})
    assert out["tmp"] == skeleton
    assert out["caps"] == "0000000000000000"
    assert out["no_new_privs"] == "1"
    assert out["setgid"] == "Operation not permitted"
    assert out["low_port"] == "Permission denied"
    # The host's view is untouched.
    assert (state / "secret").read_text() == "root key"
    assert os.listdir(tmp_path) == ["state"]


def test_app_sandbox_hides_the_whole_state_directory(tmp_path: Path) -> None:
    state = _state(tmp_path)
    spec = SandboxSpec(
        200123, 200123, masks=(str(state),), reveals=runtime_reveals(), mask_tmp=True
    )
    out = _run(spec, state)
    assert out["ids"] == [200123, 200123, []]
    assert out["secret"].startswith("ERR") and out["own"].startswith("ERR")  # type: ignore[union-attr]
    assert out["state_listing"] == []
    assert out["setgid"] == "Operation not permitted"  # never into the proxy's group


def test_gateway_sandbox_keeps_only_the_low_port_capability(tmp_path: Path) -> None:
    state = _state(tmp_path)
    spec = SandboxSpec(
        1337,
        1337,
        masks=(str(state),),
        reveals=runtime_reveals(),
        mask_tmp=True,
        bind_low_ports=True,
    )
    out = _run(spec, state)
    assert out["caps"] == f"{1 << 10:016x}"  # CAP_NET_BIND_SERVICE and nothing else
    assert out["low_port"] == "bound"
    assert out["setgid"] == "Operation not permitted"


def test_a_failing_sandbox_never_runs_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    argv = sandbox_argv(
        sys.executable,
        SandboxSpec(200124, 200124, reveals=(str(tmp_path / "missing"),), masks=(str(tmp_path),)),
        ["touch", str(marker)],
    )
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 126
    assert "pilotfish sandbox:" in proc.stderr
    assert not marker.exists()


def test_a_project_in_a_closed_directory_is_still_reachable(tmp_path: Path) -> None:
    """A clone in a 0700 directory (``mktemp -d``): the app runs its code from it and
    sees its files, but not the state directory inside it."""
    project = tmp_path / "clone"
    (project / "code").mkdir(parents=True)
    (project / "code" / "app.py").write_text("print('app ran')\n")
    (project / "README").write_text("top")
    state = project / ".pilotfish"
    (state / "ca").mkdir(parents=True)
    (state / "ca" / "root-key.pem").write_text("key")
    project.chmod(0o700)
    spec = SandboxSpec(
        200125,
        200125,
        masks=(str(state),),
        reveals=(*runtime_reveals(), str(project)),
        mask_tmp=True,
        workdir=str(project),
    )
    probe = (
        "import os, runpy; runpy.run_path('code/app.py');"
        "print(sorted(os.listdir('.')), open('README').read(), os.listdir('.pilotfish'))"
    )
    argv = sandbox_argv(sys.executable, spec, [sys.executable, "-c", probe])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["app ran", "['.pilotfish', 'README', 'code'] top []"]


VOLUME_PROBE = r"""
import json, os, sys
target = sys.argv[1]
out = {"files": sorted(os.listdir(target)), "crt": open(target + "/crt").read()}
out["etc_hosts"] = open("/etc/hosts").read()
out["etc_entries"] = sorted(e for e in os.listdir("/etc") if e != os.path.basename(target))
try:
    open(target + "/crt", "w")
    out["write"] = "ok"
except OSError as exc:
    out["write"] = exc.strerror
print(json.dumps(out))
"""


def test_a_secret_volume_appears_at_its_mount_path_for_the_app_alone(tmp_path: Path) -> None:
    """A mount path missing on the host (/etc/<name>) is made in the app's view only:
    the files are there, the rest of /etc is the host's, and the host has no new entry."""
    state = _state(tmp_path)
    volume = state / "pods" / "p" / "volumes" / "0"
    volume.mkdir(parents=True)
    (volume / "crt").write_text("CERT")
    os.chown(volume / "crt", 200124, 200124)
    (volume / "crt").chmod(0o400)
    os.chown(volume, 200124, 200124)
    volume.chmod(0o500)
    target = f"/etc/pilotfish-test-volume-{os.getpid()}"
    spec = SandboxSpec(
        200124,
        200124,
        masks=(str(state),),
        reveals=runtime_reveals(),
        mask_tmp=True,
        volumes=((str(volume), target),),
    )
    argv = sandbox_argv(sys.executable, spec, [sys.executable, "-c", VOLUME_PROBE, target])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["files"] == ["crt"] and out["crt"] == "CERT"
    assert out["write"] == "Permission denied"  # 0400: read, never written
    assert out["etc_hosts"] == Path("/etc/hosts").read_text()
    assert out["etc_entries"] == sorted(os.listdir("/etc"))
    assert not os.path.exists(target)  # the host's /etc is untouched


NETNS_PROBE = r"""
import ctypes, os, socket, sys
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(status["CapEff"].strip(), flush=True)
name = sys.stdin.readline().strip()  # the namespace exists only from now on
fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
libc = ctypes.CDLL(None, use_errno=True)
if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
    print("setns failed:", os.strerror(ctypes.get_errno()), flush=True)
    sys.exit(1)
print(",".join(n for _, n in socket.if_nameindex()), flush=True)
"""


def test_node_proxy_sandbox_keeps_only_sys_admin_and_sees_later_namespaces(
    tmp_path: Path,
) -> None:
    state = _state(tmp_path)
    spec = SandboxSpec(
        1337,
        1337,
        masks=(str(state),),
        reveals=runtime_reveals(),
        mask_tmp=True,
        enter_netns=True,
    )
    argv = sandbox_argv(sys.executable, spec, [sys.executable, "-c", NETNS_PROBE])
    name = f"pfsbx{os.getpid()}"
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        caps = proc.stdout.readline().strip()
        assert caps == f"{1 << 21:016x}"  # CAP_SYS_ADMIN and nothing else
        subprocess.run(["ip", "netns", "add", name], check=True)
        proc.stdin.write(name + "\n")
        proc.stdin.flush()
        # Created after the sandbox started, the namespace is there and can be entered.
        assert proc.stdout.readline().strip() == "lo"
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        proc.wait()
        subprocess.run(["ip", "netns", "delete", name], check=False)
