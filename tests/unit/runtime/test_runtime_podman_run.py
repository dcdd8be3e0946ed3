"""The ``podman run`` command line of a container pod, and when podman may be used."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pilotfish.runtime.network.base import PodAddress
from pilotfish.runtime.pod_command import PodEnv
from pilotfish.runtime.pod_spec import ContainerImage, PodSpec, PortSpec
from pilotfish.runtime.podman import (
    POD_LABEL,
    STATE_DIR_LABEL,
    Podman,
    container_runtime_problem,
    detect_podman,
    oci_runtime_args,
    remove_mesh_containers,
)
from pilotfish.runtime.podman_run import container_env, env_file_text, run_argv
from pilotfish.runtime.users import PodUser

CONTAINER = ContainerImage(
    image="localhost/shop/reviews:2",
    command=("/usr/bin/python3", "-u"),
    args=("/app/reviews.py", "--port", "9080"),
    working_dir="/srv",
)
SPEC = PodSpec(
    name="reviews-0",
    workload="reviews",
    namespace="shop",
    command=(),
    service_account="bookinfo-reviews",
    env=(("GREETING", "hi there"), ("POD_IP", "spoofed")),
    ports=(PortSpec("http", 9080), PortSpec("admin-api", 9090)),
    container=CONTAINER,
)
PODMAN = Podman(
    "/usr/bin/podman",
    Path("/var/mesh"),
    global_args=("--runtime", "/usr/sbin/runc"),
    ulimits=("nofile=20000:20000", "nproc=32768:32768"),
)


def _env(tmp_path: Path, netns: str | None = "pf-reviews-0.shop") -> PodEnv:
    return PodEnv(
        address=PodAddress("reviews-0.shop", "198.18.0.7", netns, ("ip", "netns", "exec", "x")),
        mode="transparent",
        xds_address="198.18.0.1:15012",
        log_dir=tmp_path / "logs",
        work_dir=tmp_path / "pods",
        app_user=PodUser(200042, 200042),
        podman=PODMAN,
    )


def _flags(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_the_container_joins_the_pods_namespace_names_and_identity(tmp_path: Path) -> None:
    argv = run_argv(PODMAN, SPEC, _env(tmp_path), tmp_path / "container.env")
    assert argv[:4] == ["/usr/bin/podman", "--runtime", "/usr/sbin/runc", "run"]
    assert _flags(argv, "--network") == ["ns:/run/netns/pf-reviews-0.shop"]
    assert _flags(argv, "--name") == ["pf-reviews-0.shop"]
    assert _flags(argv, "--hostname") == ["reviews-0"]
    assert _flags(argv, "--volume") == [
        "/etc/netns/pf-reviews-0.shop/hosts:/etc/hosts:ro",
        "/etc/netns/pf-reviews-0.shop/resolv.conf:/etc/resolv.conf:ro",
    ]
    assert _flags(argv, "--user") == ["200042:200042"]
    assert _flags(argv, "--cap-drop") == ["all"]
    assert _flags(argv, "--security-opt") == ["no-new-privileges"]
    assert _flags(argv, "--pull") == ["never"]
    assert "--rm" in argv and "--http-proxy=false" in argv
    assert _flags(argv, "--label") == [
        f"{STATE_DIR_LABEL}=/var/mesh",
        f"{POD_LABEL}=reviews-0.shop",
    ]
    assert _flags(argv, "--ulimit") == ["nofile=20000:20000", "nproc=32768:32768"]
    assert _flags(argv, "--env-file") == [str(tmp_path / "container.env")]


def test_command_args_and_working_dir_follow_kubernetes(tmp_path: Path) -> None:
    argv = run_argv(PODMAN, SPEC, _env(tmp_path), tmp_path / "e")
    # command replaces the entrypoint (as an argv, never re-split), args follow the image.
    assert json.loads(_flags(argv, "--entrypoint")[0]) == ["/usr/bin/python3", "-u"]
    assert _flags(argv, "--workdir") == ["/srv"]
    image_at = argv.index("localhost/shop/reviews:2")
    assert argv[image_at + 1 :] == ["/app/reviews.py", "--port", "9080"]
    assert argv.index("--entrypoint") < image_at


def test_the_images_own_entrypoint_command_and_workdir_when_none_is_given(
    tmp_path: Path,
) -> None:
    plain = PodSpec(
        name="web-0",
        workload="web",
        namespace="default",
        command=(),
        container=ContainerImage(image="localhost/web"),
    )
    argv = run_argv(PODMAN, plain, _env(tmp_path, "pf-web-0"), tmp_path / "e")
    assert argv[-1] == "localhost/web"
    assert "--entrypoint" not in argv and "--workdir" not in argv


def test_no_environment_value_is_on_the_command_line(tmp_path: Path) -> None:
    argv = run_argv(PODMAN, SPEC, _env(tmp_path), tmp_path / "e")
    assert not [a for a in argv if "hi there" in a or a.startswith("GREETING")]
    assert "--env" not in argv and "-e" not in argv


def test_the_environment_is_the_specs_then_the_runtimes(tmp_path: Path) -> None:
    variables = container_env(SPEC, _env(tmp_path), {9080: 9080, 9090: 9090})
    assert variables == {
        "GREETING": "hi there",
        "POD_IP": "198.18.0.7",  # the runtime's value wins over the spec's
        "POD_NAME": "reviews-0",
        "POD_NAMESPACE": "shop",
        "SERVICE_ACCOUNT": "bookinfo-reviews",
        "PORT": "9080",
        "PORT_HTTP": "9080",
        "PORT_ADMIN_API": "9090",
    }
    # No host PATH, HOME or Python variables: the image has its own.
    assert not {"PATH", "HOME", "PYTHONPATH"} & variables.keys()
    assert env_file_text(variables).splitlines()[0] == "GREETING=hi there"


def test_env_file_refuses_what_its_format_cannot_carry() -> None:
    assert env_file_text({"A": "x=y z", "B": ""}) == "A=x=y z\nB=\n"
    with pytest.raises(ValueError, match="env KEY: a value with a line break"):
        env_file_text({"KEY": "line one\nline two"})
    with pytest.raises(ValueError, match="not a variable name"):
        env_file_text({"A B": "x"})


def test_a_container_needs_the_pods_network_namespace(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="network namespace"):
        run_argv(PODMAN, SPEC, _env(tmp_path, netns=None), tmp_path / "e")


@pytest.mark.parametrize(
    ("choice", "mode", "root", "podman", "problem"),
    [
        ("auto", "transparent", True, "/usr/bin/podman", None),
        ("podman", "transparent", True, "/usr/bin/podman", None),
        ("none", "transparent", True, "/usr/bin/podman", "--container-runtime none"),
        ("auto", "transparent", True, None, "podman is not installed"),
        ("auto", "transparent", False, "/usr/bin/podman", "need `pilotfish up` as root"),
        ("auto", "explicit", True, "/usr/bin/podman", "explicit mode runs no containers"),
    ],
)
def test_when_podman_may_be_used(
    choice: str, mode: str, root: bool, podman: str | None, problem: str | None
) -> None:
    found = container_runtime_problem(choice, mode, root=root, podman=podman)  # type: ignore[arg-type]
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_detected_podman_has_limits_root_may_set(tmp_path: Path) -> None:
    import resource

    podman = detect_podman(tmp_path, which=lambda name: f"/opt/bin/{name}")
    assert podman.executable == "/opt/bin/podman"
    assert podman.state_dir == tmp_path.resolve()
    files, procs = (dict([u.split("=")]) for u in podman.ulimits)
    soft, hard = (int(v) for v in files["nofile"].split(":"))
    own = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft <= hard and hard <= (own[1] if own[1] != resource.RLIM_INFINITY else hard)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert all(0 < int(v) <= pid_max for v in procs["nproc"].split(":"))


def test_up_refuses_container_runtime_podman_where_it_cannot_be_used(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pilotfish.cli.main import cli

    manifest = tmp_path / "m.yaml"
    manifest.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
    argv = ["up", str(manifest), "--mode", "explicit", "--container-runtime", "podman"]
    result = CliRunner().invoke(cli, [*argv, "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "--container-runtime" in result.output
    assert "explicit mode runs no containers" in " ".join(result.output.split())
    assert not (tmp_path / "s").exists()  # refused before anything started


def test_runc_is_chosen_only_where_crun_refuses_the_cgroup_layout(tmp_path: Path) -> None:
    hybrid = tmp_path / "cgroup.controllers"
    hybrid.write_text("hugetlb\n")
    assert oci_runtime_args(lambda n: f"/usr/sbin/{n}", hybrid) == ("--runtime", "/usr/sbin/runc")
    assert oci_runtime_args(lambda n: None, hybrid) == ()  # no runc: podman's own choice
    hybrid.write_text("\n")  # hybrid, but no controllers on the v2 tree: crun copes
    assert oci_runtime_args(lambda n: f"/usr/sbin/{n}", hybrid) == ()
    assert oci_runtime_args(lambda n: f"/usr/sbin/{n}", tmp_path / "absent") == ()  # not hybrid


def test_teardown_without_podman_removes_nothing(tmp_path: Path) -> None:
    assert remove_mesh_containers(tmp_path, which=lambda name: None) == 0


def test_secret_volumes_are_mounted_read_only_where_the_pod_asked(tmp_path: Path) -> None:
    env = dataclasses.replace(
        _env(tmp_path), volumes=((str(tmp_path / "vol-0"), "/etc/secret-volume"),)
    )
    argv = run_argv(PODMAN, SPEC, env, tmp_path / "e")
    assert _flags(argv, "--volume")[2:] == [f"{tmp_path / 'vol-0'}:/etc/secret-volume:ro"]
