"""A pod's Secret volumes written as files for its sandbox to mount."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from pilotfish.api.core.secret import SecretSpec
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.loader import load_text
from pilotfish.api.runtime.workload import API_VERSION
from pilotfish.runtime.pod_spec import PodSpec, SecretVolumeSpec
from pilotfish.runtime.secret_volumes import SecretVolumeError, materialize, mounts

UID, GID = os.getuid(), os.getgid()


def _secret(**values: bytes) -> SecretSpec:
    return SecretSpec(
        data={k.replace("_", "."): base64.b64encode(v).decode() for k, v in values.items()}
    )


def _pod(*volumes: SecretVolumeSpec) -> PodSpec:
    return PodSpec("p-0", "p", "ns", ("true",), secret_volumes=volumes)


def test_items_pick_keys_and_name_the_files(tmp_path: Path) -> None:
    secrets = {("ns", "tls"): _secret(tls_crt=b"CERT", tls_key=b"KEY", ca_crt=b"CA")}
    pod = _pod(
        SecretVolumeSpec("tls", "/etc/secret-volume", (("tls.crt", "crt"), ("tls.key", "d/key"))),
        SecretVolumeSpec("tls", "/etc/all"),
    )
    out = materialize(pod, tmp_path, lambda ns, n: secrets.get((ns, n)), UID, GID)
    assert out == mounts(pod, tmp_path)
    assert [target for _, target in out] == ["/etc/secret-volume", "/etc/all"]
    first, every = Path(out[0][0]), Path(out[1][0])
    assert (first / "crt").read_bytes() == b"CERT" and (first / "d" / "key").read_bytes() == b"KEY"
    assert sorted(p.name for p in first.iterdir()) == ["crt", "d"]  # ca.crt not picked
    assert sorted(p.name for p in every.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    assert stat.S_IMODE((first / "crt").stat().st_mode) == 0o400
    assert stat.S_IMODE(first.stat().st_mode) == 0o500


def test_a_missing_secret_or_key_fails_and_writes_nothing(tmp_path: Path) -> None:
    secrets = {("ns", "tls"): _secret(tls_crt=b"CERT")}

    def lookup(ns: str, name: str) -> SecretSpec | None:
        return secrets.get((ns, name))

    good = SecretVolumeSpec("tls", "/etc/a")
    with pytest.raises(SecretVolumeError, match=r"Secret ns/other .* does not exist"):
        materialize(_pod(good, SecretVolumeSpec("other", "/etc/b")), tmp_path, lookup, UID, GID)
    with pytest.raises(SecretVolumeError, match=r"has no key 'tls\.key'"):
        materialize(
            _pod(SecretVolumeSpec("tls", "/etc/a", (("tls.key", "k"),))), tmp_path, lookup, UID, GID
        )
    assert not (tmp_path / "volumes").exists()


def test_a_restart_replaces_the_files(tmp_path: Path) -> None:
    pod = _pod(SecretVolumeSpec("tls", "/etc/a"))
    materialize(pod, tmp_path, lambda ns, n: _secret(old=b"1"), UID, GID)
    out = materialize(pod, tmp_path, lambda ns, n: _secret(new=b"2"), UID, GID)
    assert [p.name for p in Path(out[0][0]).iterdir()] == ["new"]


def test_a_config_map_volume_writes_its_data(tmp_path: Path) -> None:
    maps = {("ns", "ca"): {"ca.crt": "CA PEM", "other": "x"}}
    pod = _pod(SecretVolumeSpec("ca", "/etc/configmap-volume", (("ca.crt", "ca"),), "ConfigMap"))
    out = materialize(pod, tmp_path, lambda ns, n: None, UID, GID, lambda ns, n: maps.get((ns, n)))
    assert [p.name for p in Path(out[0][0]).iterdir()] == ["ca"]
    assert (Path(out[0][0]) / "ca").read_bytes() == b"CA PEM"
    with pytest.raises(SecretVolumeError, match=r"ConfigMap ns/ca .* does not exist"):
        materialize(pod, tmp_path, lambda ns, n: None, UID, GID, lambda ns, n: None)


def _problems(volumes: list[dict[str, object]]) -> list[Diagnostic]:
    """What loading a Workload with these ``secretVolumes`` reports (file, field, reason)."""
    doc = {
        "apiVersion": API_VERSION,
        "kind": "Workload",
        "metadata": {"name": "w", "namespace": "ns"},
        "spec": {"command": ["true"], "secretVolumes": volumes},
    }
    return list(load_text(json.dumps(doc), "w.json").diagnostics)


@pytest.mark.parametrize(
    ("volume", "problem"),
    [
        ({"secretName": "s", "mountPath": "etc/x"}, "must be an absolute path"),
        ({"secretName": "s", "mountPath": "/x"}, "below a top-level directory"),
        ({"secretName": "s", "mountPath": "/etc/../x"}, "without '..'"),
        (
            {"secretName": "s", "mountPath": "/etc/x", "items": [{"key": "k", "path": "../k"}]},
            "must be relative",
        ),
        ({"secretName": "Bad_Name", "mountPath": "/etc/x"}, "Secret name"),
    ],
)
def test_bad_volumes_are_refused_with_the_field(volume: dict[str, object], problem: str) -> None:
    found = _problems([volume])
    assert any(problem in d.message and "secretVolumes[0]" in d.field for d in found), found


def test_two_volumes_may_not_share_a_mount_path() -> None:
    same = {"secretName": "s", "mountPath": "/etc/x"}
    found = _problems([same, {**same, "mountPath": "/etc/x/"}])
    assert [d.field for d in found] == ["spec.secretVolumes[1].mountPath"]
