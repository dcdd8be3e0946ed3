"""Commands that run in polls and scripts import only what they use.

Each ``pilotfish`` command is a new Python process. Importing the mesh
runtime, the control plane or the config stores costs over half a second of
CPU each, so the commands that only talk to a running mesh, and the front of
``up --detach`` (which checks flags and waits for the supervisor), must not
load them. Checked in a fresh interpreter, where nothing else imported them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Modules that bring most of the cost, and that these commands do not need.
HEAVY = (
    "pilotfish.runtime.mesh",
    "pilotfish.controlplane.runner",
    "pilotfish.store.etcd",
    "pilotfish.store.files",
    "pilotfish.agent.agent",
    "pilotfish.ca.service",
    "pilotfish.api.loader",
)


def loaded_after(statement: str) -> set[str]:
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("command", ["up", "status", "down", "logs", "describe"])
def test_a_light_command_loads_none_of_the_heavy_modules(command: str) -> None:
    statement = f"from pilotfish.cli.main import load_command\nload_command({command!r})"
    loaded = loaded_after(statement)
    assert "pilotfish.runtime.settings" in loaded  # the command itself did load
    assert sorted(loaded & set(HEAVY)) == []


def test_the_agent_loads_neither_the_ir_nor_the_resource_models() -> None:
    # One agent starts per proxy. It needs two SDS names (``pilotfish.sds_names``),
    # not the IR package, whose init loads every IR module.
    statement = "from pilotfish.cli.main import load_command\nload_command('agent')"
    loaded = loaded_after(statement)
    assert "pilotfish.agent.agent" in loaded
    unwanted = ("pilotfish.ir", "pilotfish.api", "pilotfish.translate", "pydantic", "yaml")
    assert sorted(m for m in loaded if any(m == u or m.startswith(u + ".") for u in unwanted)) == []


def test_the_lazy_package_names_still_resolve_to_their_modules() -> None:
    from pilotfish.ca import MeshCa
    from pilotfish.ca.service import MeshCa as DefinedMeshCa
    from pilotfish.store import FileStore, StoreError
    from pilotfish.store.base import StoreError as DefinedStoreError
    from pilotfish.store.files import FileStore as DefinedFileStore

    assert (MeshCa, FileStore, StoreError) == (DefinedMeshCa, DefinedFileStore, DefinedStoreError)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        import pilotfish.store as store

        _ = store.Nope


def test_the_checks_moved_out_are_still_exported_where_they_belong() -> None:
    loaded = loaded_after(
        "from pilotfish.runtime.node_mode import NodeRuntime, node_mode_problem\n"
        "from pilotfish.runtime.addons import AddonError, parse_addons\n"
        "from pilotfish.runtime.remote_control_plane import parse_urls\n"
        "assert parse_addons('dashboard,etcd') == ('etcd', 'dashboard')\n"
        "assert parse_urls('http://a:1/') == ('http://a:1',)"
    )
    assert "pilotfish.runtime.mesh" in loaded
