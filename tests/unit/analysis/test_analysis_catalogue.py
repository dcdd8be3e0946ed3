"""Istio's message catalogue as data, and the table of what Pilotfish raises."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from pilotfish.api.analysis import ANALYZER_CODES
from pilotfish.api.analysis.coverage import NOT_APPLICABLE, NOTES, render_table, status_of
from pilotfish.api.analysis.messages import MESSAGES, by_code, by_name
from pilotfish.api.diagnostics import Severity

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "analyze-messages.md"
ISTIO_GIT = Path("/work/.mirror/istio+istio/repo")


def test_catalogue_has_istios_codes_names_and_levels() -> None:
    assert len(MESSAGES) == 68
    assert len({m.code for m in MESSAGES}) == len(MESSAGES)
    ref = by_code("IST0101")
    assert ref is not None
    assert (ref.name, ref.level) == ("ReferencedResourceNotFound", Severity.ERROR)
    assert by_name("NamespaceNotInjected").level is Severity.INFO
    assert by_name("GatewayPortNotDefinedOnService").code == "IST0162"
    assert by_code("IST0104") is None  # retired in Istio


def test_catalogue_matches_istios_messages_yaml_when_available() -> None:
    # The Istio mirror is there on the development machine; elsewhere the
    # assertions above pin the catalogue.
    if not ISTIO_GIT.exists():
        return
    text = subprocess.run(
        ["git", "--git-dir", str(ISTIO_GIT), "show", "HEAD:pkg/config/analysis/msg/messages.yaml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    istio = {m["code"]: (m["name"], m["level"]) for m in yaml.safe_load(text)["messages"]}
    ours = {m.code: (m.name, m.level.value.capitalize()) for m in MESSAGES}
    assert ours == istio


def test_every_raised_code_is_in_the_catalogue_and_none_is_both() -> None:
    codes = {m.code for m in MESSAGES}
    assert codes >= ANALYZER_CODES
    assert set(NOT_APPLICABLE) <= codes
    assert not ANALYZER_CODES & set(NOT_APPLICABLE)
    assert set(NOTES) <= ANALYZER_CODES  # notes are about implemented messages
    assert status_of("IST0162", ANALYZER_CODES) == "implemented"
    assert status_of("IST0151", ANALYZER_CODES) == "not applicable"


def test_docs_table_is_current(update_golden: bool) -> None:
    table = render_table(ANALYZER_CODES)
    if update_golden:
        DOC.write_text(table, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == table, (
        "docs/analyze-messages.md is stale: run pytest tests/unit/analysis --update-golden"
    )
