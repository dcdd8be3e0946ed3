"""How a pod's processes are invoked: agent flags and app environment, per mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pilotfish.runtime.isolation import Isolation
from pilotfish.runtime.network.base import PodAddress
from pilotfish.runtime.pod_command import (
    AMBIENT_POD_MAIN,
    PodEnv,
    agent_argv,
    agent_env,
    allocate_app_ports,
    app_argv,
    app_env,
    port_env_name,
)
from pilotfish.runtime.pod_spec import PodSpec, PortSpec, ProbeSpec
from pilotfish.runtime.users import PodUser

SPEC = PodSpec(
    name="reviews-0",
    workload="reviews",
    namespace="shop",
    command=("python", "-m", "pilotfish.samples.echo"),
    labels=(("app", "reviews"), ("version", "v1")),
    service_account="bookinfo-reviews",
    env=(("GREETING", "hi"), ("PORT", "1"), ("POD_IP", "spoofed")),
    ports=(PortSpec("http", 9080), PortSpec("admin-api", 9090), PortSpec(None, 9100)),
    readiness=ProbeSpec("http", 9080, "/health"),
)
BASE = {"HOME": "/root", "PATH": "/usr/bin:/bin", "HTTP_PROXY": "http://corp:3128", "SECRET": "x"}


def _env(
    mode: str, tmp_path: Path, prefix: tuple[str, ...] = (), *, confined: bool = False
) -> PodEnv:
    isolation = Isolation(str(tmp_path), ("/usr", "/venv", "/src"), "/src") if confined else None
    return PodEnv(
        address=PodAddress("reviews-0", "127.77.0.5", None, prefix),
        mode=mode,  # type: ignore[arg-type]
        xds_address="127.0.0.1:15010",
        log_dir=tmp_path / "logs",
        work_dir=tmp_path / "work",
        python="/venv/bin/python",
        agent_args=("--concurrency", "1"),
        isolation=isolation,
        app_user=PodUser(200007, 200007) if confined else None,
    )


def _flags(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_explicit_agent_argv(tmp_path: Path) -> None:
    env = _env("explicit", tmp_path)
    ports = {9080: 40001, 9090: 40002, 9100: 40003}
    argv = agent_argv(SPEC, env, ports)
    assert argv[:3] == ["/venv/bin/python", "-m", "pilotfish.cli.agent"]
    one = {f: _flags(argv, f) for f in argv if f.startswith("--")}
    assert one["--interception"] == ["none"]
    assert one["--ip"] == ["127.77.0.5"]
    assert one["--admin-address"] == ["127.77.0.5"]
    assert one["--admin-port"] == ["15000"]
    assert one["--health-bind"] == ["127.77.0.5"]
    assert one["--health-port"] == ["15021"]
    # Istio's metrics ports on the pod's own address, as in transparent mode.
    assert one["--stats-port"] == ["15090"]
    assert one["--status-port"] == ["15020"]
    assert one["--xds-address"] == ["127.0.0.1:15010"]
    assert one["--app-port"] == ["9080=40001", "9090=40002", "9100=40003"]
    assert one["--label"] == ["app=reviews", "version=v1"]
    assert one["--name"] == ["reviews-0"] and one["--namespace"] == ["shop"]
    assert one["--service-account"] == ["bookinfo-reviews"]
    assert one["--app-probe"] == ["http:9080:/health"]
    # Named per namespace, so equal pod names in two namespaces do not share files.
    assert one["--work-dir"] == [str(tmp_path / "work" / "reviews-0.shop" / "proxy")]
    assert "--envoy-gid" not in one
    assert argv[-2:] == ["--concurrency", "1"]


def test_explicit_app_metrics_follow_the_apps_moved_port(tmp_path: Path) -> None:
    scraped = PodSpec(
        **{
            **{f: getattr(SPEC, f) for f in SPEC.__dataclass_fields__},
            "annotations": (
                ("prometheus.io/scrape", "true"),
                ("prometheus.io/port", "9090"),
                ("prometheus.io/path", "/stats"),
            ),
        }
    )
    ports = {9080: 40001, 9090: 40002, 9100: 40003}
    argv = agent_argv(scraped, _env("explicit", tmp_path), ports)
    assert _flags(argv, "--app-metrics") == ["40002:/stats"]
    transparent = _env("transparent", tmp_path)
    argv = agent_argv(scraped, transparent, allocate_app_ports(scraped, transparent))
    assert _flags(argv, "--app-metrics") == ["9090:/stats"]


def test_transparent_agent_argv_runs_inside_the_netns(tmp_path: Path) -> None:
    env = _env("transparent", tmp_path, ("ip", "netns", "exec", "pf-reviews-0"))
    argv = agent_argv(SPEC, env, allocate_app_ports(SPEC, env))
    assert argv[:5] == ["ip", "netns", "exec", "pf-reviews-0", "/venv/bin/python"]
    one = {f: _flags(argv, f) for f in argv if f.startswith("--")}
    assert one["--interception"] == ["redirect"]
    assert one["--health-bind"] == ["0.0.0.0"]
    assert one["--stats-port"] == ["15090"]
    assert one["--envoy-gid"] == ["1337"]
    assert one["--ip"] == ["127.77.0.5"]
    assert "--app-port" not in one and "--admin-address" not in one
    assert app_argv(SPEC, env) == ["ip", "netns", "exec", "pf-reviews-0", *SPEC.command]


def test_explicit_app_env(tmp_path: Path) -> None:
    env = _env("explicit", tmp_path)
    ports = {9080: 40001, 9090: 40002, 9100: 40003}
    out = app_env(SPEC, env, ports, base=BASE)
    assert out["PORT"] == "40001"
    assert out["PORT_HTTP"] == "40001" and out["PORT_ADMIN_API"] == "40002"
    assert out["HTTP_PROXY"] == out["http_proxy"] == "http://127.77.0.5:15001"
    assert out["NO_PROXY"] == "localhost,127.0.0.1,127.77.0.5"
    assert out["POD_NAME"] == out["HOSTNAME"] == "reviews-0"
    assert out["POD_NAMESPACE"] == "shop"
    assert out["POD_IP"] == "127.77.0.5"  # the runtime's value wins over the spec's
    assert out["SERVICE_ACCOUNT"] == "bookinfo-reviews"
    assert out["PATH"] == "/venv/bin:/usr/bin:/bin"
    assert out["GREETING"] == "hi" and out["HOME"] == "/root"
    assert "SECRET" not in out


def test_transparent_app_env(tmp_path: Path) -> None:
    env = _env("transparent", tmp_path)
    out = app_env(SPEC, env, allocate_app_ports(SPEC, env), base=BASE)
    assert out["PORT"] == "9080"
    assert out["PORT_ADMIN_API"] == "9090"
    # Capture carries the app's traffic: no proxy variables, not even the host's.
    assert not {"HTTP_PROXY", "http_proxy", "NO_PROXY"} & out.keys()


def test_spec_path_follows_the_venv(tmp_path: Path) -> None:
    spec = PodSpec("a-0", "a", "default", ("true",), env=(("PATH", "/opt/bin"),))
    out = app_env(spec, _env("explicit", tmp_path), {}, base=BASE)
    assert out["PATH"] == "/venv/bin:/opt/bin"
    assert "PORT" not in out


def test_explicit_ports_are_distinct_and_free(tmp_path: Path) -> None:
    ports = allocate_app_ports(SPEC, _env("explicit", tmp_path))
    assert sorted(ports) == [9080, 9090, 9100]
    assert len(set(ports.values())) == 3
    assert all(p not in (9080, 9090, 9100) and 0 < p < 65536 for p in ports.values())


@pytest.mark.parametrize(
    ("name", "expected"),
    [("http", "PORT_HTTP"), ("grpc-web", "PORT_GRPC_WEB"), ("a.b", "PORT_A_B")],
)
def test_port_env_name(name: str, expected: str) -> None:
    assert port_env_name(name) == expected


def _sandbox(argv: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """(launcher flags, the command it runs) of a sandboxed command line."""
    start = argv.index("pilotfish.runtime.sandbox") + 1
    end = argv.index("--", start)
    flags: dict[str, list[str]] = {}
    i = start
    while i < end:
        if i + 1 < end and not argv[i + 1].startswith("--"):
            flags.setdefault(argv[i], []).append(argv[i + 1])
            i += 2
        else:
            flags.setdefault(argv[i], []).append("")
            i += 1
    return flags, argv[end + 1 :]


def test_confined_agent_runs_as_the_proxy_user_in_its_sandbox(tmp_path: Path) -> None:
    env = _env("transparent", tmp_path, ("ip", "netns", "exec", "pf-reviews-0"), confined=True)
    argv = agent_argv(SPEC, env, allocate_app_ports(SPEC, env))
    # The netns first, then the sandbox, then the agent.
    assert argv[:7] == [
        "ip", "netns", "exec", "pf-reviews-0", "/venv/bin/python", "-m",
        "pilotfish.runtime.sandbox",
    ]  # fmt: skip
    flags, agent = _sandbox(argv)
    assert flags["--uid"] == ["1337"] and flags["--gid"] == ["1337"]
    assert flags["--mask"] == [str(tmp_path)]
    proxy_dir = str(tmp_path / "work" / "reviews-0.shop" / "proxy")
    assert flags["--reveal"] == ["/usr", "/venv", "/src", proxy_dir]
    assert "--mask-tmp" in flags and "--bind-low-ports" not in flags
    assert agent[:3] == ["/venv/bin/python", "-m", "pilotfish.cli.agent"]
    # Already in the proxy group: the agent must not try to change groups for Envoy.
    assert "--envoy-gid" not in agent
    assert _flags(agent, "--work-dir") == [proxy_dir]


def test_confined_app_runs_as_its_pod_user_without_the_host_env(tmp_path: Path) -> None:
    env = _env("transparent", tmp_path, ("ip", "netns", "exec", "pf-reviews-0"), confined=True)
    argv = app_argv(SPEC, env)
    flags, command = _sandbox(argv)
    assert flags["--uid"] == ["200007"] and flags["--gid"] == ["200007"]
    assert flags["--reveal"] == ["/usr", "/venv", "/src"]
    assert flags["--workdir"] == ["/src"]
    assert command == list(SPEC.command)
    out = app_env(SPEC, env, allocate_app_ports(SPEC, env), base=BASE)
    assert out["HOME"] == "/tmp"
    agent = agent_env(env, base=BASE)
    assert agent is not None and agent["HOME"] == "/tmp"
    assert "SECRET" not in agent and "HTTP_PROXY" not in agent
    assert agent_env(_env("transparent", tmp_path), base=BASE) is None


def test_confined_app_needs_a_user(tmp_path: Path) -> None:
    env = _env("explicit", tmp_path, confined=True)
    env = PodEnv(**{**{f: getattr(env, f) for f in env.__dataclass_fields__}, "app_user": None})
    with pytest.raises(ValueError, match="needs an app user"):
        app_argv(SPEC, env)


def test_an_ambient_pod_runs_its_readiness_process_instead_of_a_sidecar(tmp_path: Path) -> None:
    import dataclasses

    env = dataclasses.replace(
        _env("transparent", tmp_path, ("ip", "netns", "exec", "pf-reviews-0")), ambient=True
    )
    argv = agent_argv(SPEC, env, allocate_app_ports(SPEC, env))
    # No site, no runpy, no environment: the small interpreter (see ambient_pod's docstring).
    assert argv[:9] == [
        "ip", "netns", "exec", "pf-reviews-0", "/venv/bin/python", "-I", "-S", "-c",
        AMBIENT_POD_MAIN,
    ]  # fmt: skip
    assert "pilotfish.cli.agent" not in argv  # no sidecar agent, no Envoy
    assert _flags(argv, "--health-port") == ["15021"]
    if SPEC.readiness is not None:
        assert _flags(argv, "--app-probe") == [SPEC.readiness.app_probe().flag()]


def test_a_pod_out_of_the_mesh_runs_the_readiness_process_without_node_proxy_checks(
    tmp_path: Path,
) -> None:
    import dataclasses

    env = dataclasses.replace(
        _env("transparent", tmp_path, ("ip", "netns", "exec", "pf-reviews-0")), out_of_mesh=True
    )
    argv = agent_argv(SPEC, env, allocate_app_ports(SPEC, env))
    assert AMBIENT_POD_MAIN in argv and "pilotfish.cli.agent" not in argv
    assert "--without-node-proxy" in argv
    plain = dataclasses.replace(env, out_of_mesh=False, ambient=True)
    assert "--without-node-proxy" not in agent_argv(SPEC, plain, allocate_app_ports(SPEC, plain))


def test_a_confined_ambient_pod_execs_the_small_interpreter_in_its_sandbox(
    tmp_path: Path,
) -> None:
    import dataclasses

    env = _env("transparent", tmp_path, ("ip", "netns", "exec", "pf-reviews-0"), confined=True)
    argv = agent_argv(SPEC, dataclasses.replace(env, ambient=True), {})
    flags, command = _sandbox(argv)
    assert flags["--uid"] == ["1337"] and "--enter-netns" not in flags
    # The sandbox execs its command (same pid): what keeps running is this interpreter.
    assert command[:5] == ["/venv/bin/python", "-I", "-S", "-c", AMBIENT_POD_MAIN]
    assert _flags(command, "--name") == ["reviews-0"]


def test_the_readiness_entry_point_finds_its_module_without_site(tmp_path: Path) -> None:
    # The real interpreter and the exact -c program; -B: no __pycache__ written by tests.
    cmd = [sys.executable, "-I", "-S", "-B", "-c", AMBIENT_POD_MAIN, "--help"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--app-probe" in done.stdout


def test_the_readiness_module_is_compiled_for_its_processes() -> None:
    import importlib.util

    from pilotfish.runtime.pod_command import compile_ambient_pod

    spec = importlib.util.find_spec("pilotfish.runtime.ambient_pod")
    assert spec is not None and spec.origin
    cached = Path(importlib.util.cache_from_source(spec.origin))
    cached.unlink(missing_ok=True)
    compile_ambient_pod.cache_clear()
    compile_ambient_pod()
    # Fresh bytecode the pods' user can read, so no process compiles it again.
    assert cached.exists() and cached.stat().st_mtime_ns >= Path(spec.origin).stat().st_mtime_ns
