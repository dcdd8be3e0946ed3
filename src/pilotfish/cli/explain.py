"""``pilotfish explain``: how the mesh handles one request, step by step.

Without ``--config`` the running control plane explains against what it
generated for the caller's proxy (``GET /debug/explain``). With ``--config
DIR`` the DIR's YAML is applied over the live configuration, in the control
plane's memory only (``POST /debug/explain``), so a change can be checked
before ``apply``; when no control plane answers, the DIR alone is explained
here, with the caller's view inferred from its WorkloadEntry or Workload
(``explain.config``): a notice on stderr says so.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import click

from pilotfish.cli.client import (
    call_api,
    connect,
    control_plane_option,
    get_json,
    token_file_option,
)
from pilotfish.explain.config import ConfigError, load_texts, offline_view, read_dir
from pilotfish.explain.engine import explain as explain_request
from pilotfish.explain.render import render_text
from pilotfish.explain.request import ExplainRequest, RequestError, parse_header
from pilotfish.model.snapshot import build_snapshot

__all__ = ["explain"]


def _offline(
    files: list[tuple[str, str]], source: str, url: str, method: str, headers: tuple[str, ...]
) -> dict[str, Any]:
    try:
        resources = load_texts(files)
        view = offline_view(resources, source)
        request = ExplainRequest(url, method, tuple(parse_header(h) for h in headers))
    except (ConfigError, RequestError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    snapshot = build_snapshot(resources, 1)
    result = explain_request(snapshot, view, request, source=source)
    if any(r.kind == "Workload" for r in resources):
        # Their pods register as endpoints only once the runtime starts them.
        result.outcome.notes.append(
            "explained without a running mesh: Workloads have no endpoints until their pods run"
        )
    return result.to_json()


@click.command("explain")
@click.option(
    "--from",
    "source",
    required=True,
    help="The calling workload: proxy id name.namespace, or a workload name.",
)
@click.argument("url")
@click.option(
    "-H", "--header", "headers", multiple=True, help="A request header, 'name: value' (repeatable)."
)
@click.option("-X", "--request", "method", default="GET", show_default=True, help="HTTP method.")
@click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--config",
    "config_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Explain with this directory's YAML applied over the live configuration "
    "(or alone, with no mesh running).",
)
@control_plane_option()
@token_file_option()
def explain(
    source: str,
    url: str,
    headers: tuple[str, ...],
    method: str,
    output: str,
    config_dir: Path | None,
    control_plane: str,
    token_file: str | None,
) -> None:
    """Explain how the mesh routes and authorizes a request to URL sent by a workload:
    listener, filter chain, virtual host, route (and why earlier routes did not match),
    cluster, endpoints, mTLS, and the destination's authorization verdict."""
    try:
        for h in headers:
            parse_header(h)
    except RequestError as exc:
        raise click.BadParameter(str(exc), param_hint="-H") from None
    api = connect(control_plane, token_file)
    if config_dir is None:
        params = [("from", source), ("url", url), ("method", method)] + [
            ("header", h) for h in headers
        ]
        result = get_json(api, "/debug/explain?" + urllib.parse.urlencode(params))
    else:
        try:
            files = read_dir(config_dir)
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"--config {config_dir}: {exc}") from None
        body = {
            "from": source,
            "url": url,
            "method": method,
            "headers": list(headers),
            "config": [{"file": f, "text": t} for f, t in files],
        }
        try:
            response = call_api(api, "POST", "/debug/explain", body)
        except click.ClickException as exc:
            if "cannot reach" not in exc.message:
                raise
            click.echo(f"no control plane at {api.url}: explaining {config_dir} alone", err=True)
            result = _offline(files, source, url, method, headers)
        else:
            if not response.ok:
                raise click.ClickException(f"HTTP {response.status}: {response.error_message()}")
            result = response.body
    if output == "json":
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        click.echo(render_text(result), nl=False)
