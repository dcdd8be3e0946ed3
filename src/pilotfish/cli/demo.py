"""``pilotfish demo``: Bookinfo in a local mesh, and a short tour of live routing."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import click
from rich.console import Console
from rich.table import Table

import pilotfish
from pilotfish.api.loader import load_file
from pilotfish.api.resource import Resource
from pilotfish.cli.tables import print_table
from pilotfish.cli.up import resolve_mode, run_foreground
from pilotfish.controlplane.admission import judge
from pilotfish.runtime.mesh import MeshRuntime
from pilotfish.runtime.settings import RuntimeSettings

__all__ = ["demo", "find_samples"]

REVIEWS_API = "/api/v1/products/0/reviews"


def find_samples() -> Path | None:
    """``samples/bookinfo`` in the working directory or next to the installed source tree."""
    candidates = [
        Path.cwd() / "samples" / "bookinfo",
        Path(pilotfish.__file__).resolve().parents[2] / "samples" / "bookinfo",
    ]
    return next((c for c in candidates if (c / "bookinfo.yaml").exists()), None)


async def converged(runtime: MeshRuntime, timeout: float = 30.0) -> None:
    """Wait until the latest configuration is built, pushed and ACKed by every proxy."""
    assert runtime.cp is not None
    cp = runtime.cp
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        built = cp.generator.snapshot.revision >= cp.store.revision
        if built:
            await cp.xds.wait_idle()
            statuses = cp.xds.status()
            if statuses and all(
                t.synced or not t.sent_version for st in statuses for t in st.types.values()
            ):
                return
        await asyncio.sleep(0.1)


async def measure(
    url: str, n: int = 100, headers: dict[str, str] | None = None, concurrency: int = 4
) -> Counter[str]:
    counts: Counter[str] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            queue.get_nowait()
            try:
                async with session.get(url, headers=headers or {}) as resp:
                    if resp.status == 200:
                        body = await resp.json(content_type=None)
                        counts[str(body.get("version", "?"))] += 1
                    else:
                        counts[f"HTTP {resp.status}"] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                counts[type(exc).__name__] += 1

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return counts


def show(console: Console, title: str, counts: Counter[str]) -> None:
    total = sum(counts.values()) or 1
    table = Table(title=title, title_justify="left", box=None, header_style="bold")
    table.add_column("reviews version")
    table.add_column("requests", justify="right")
    table.add_column("share", justify="right")
    for version, count in sorted(counts.items()):
        table.add_row(version, str(count), f"{100 * count / total:.0f}%")
    print_table(console, table)


def apply_files(runtime: MeshRuntime, *paths: Path) -> None:
    """Apply files as `pilotfish apply -f` does: validated, judged by the analyzers
    (Error-level findings refuse them), then written to the store together."""
    cp = runtime.cp
    assert cp is not None
    resources: list[Resource] = []
    for path in paths:
        result = load_file(path)
        if not result.ok:
            raise click.ClickException("\n".join(d.format() for d in result.diagnostics))
        resources += result.resources
    verdict = judge(resources, cp.store.list(), cp.settings.domain_suffix, cp.settings.mesh)
    if verdict.refused:
        raise click.ClickException("\n".join(d.format() for d in verdict.errors))
    cp.store.apply_all(resources)


async def tour(runtime: MeshRuntime, samples: Path, console: Console, exit_after: bool) -> bool:
    s = runtime.settings
    url = f"http://127.0.0.1:{s.ingress_port}{REVIEWS_API}"
    net = samples / "networking"
    await converged(runtime)
    console.rule("Bookinfo through the ingress gateway")
    console.print(f"GET {url}  (no routing rules yet: all reviews versions)", highlight=False)
    # Istio's default balancer is least request, not round robin: of two
    # versions drawn at random the one with fewer requests in flight answers.
    # With four in flight that leans a little to reviews v1, the only version
    # that does not call ratings and so answers soonest.
    show(console, "least request (the default)", await measure(url))

    steps = [
        (
            "virtual-service-all-v1.yaml: every service on v1",
            [net / "destination-rule-all.yaml", net / "virtual-service-all-v1.yaml"],
            None,
        ),
        (
            "virtual-service-reviews-50-v3.yaml: reviews 50% v1, 50% v3",
            [net / "virtual-service-reviews-50-v3.yaml"],
            None,
        ),
        (
            "virtual-service-reviews-test-v2.yaml: user jason gets v2, everyone else v1",
            [net / "virtual-service-reviews-test-v2.yaml"],
            {"end-user": "jason"},
        ),
    ]
    for title, files, special in steps:
        console.rule(title)
        apply_files(runtime, *files)
        await converged(runtime)
        show(console, "measured", await measure(url))
        if special is not None:
            show(console, f"measured with {special}", await measure(url, headers=special))
    console.rule()
    console.print(
        f"Open http://127.0.0.1:{s.ingress_port}/productpage  "
        f"(`pilotfish status`, `pilotfish proxy-status`, `pilotfish get virtualservices`)",
        highlight=False,
    )
    if exit_after:
        return True
    console.print("The mesh keeps running; press Ctrl-C to stop it.")
    return False


@click.command("demo")
@click.option("--mode", type=click.Choice(["transparent", "explicit"]), default=None)
@click.option("--ingress-port", type=int, default=8080, show_default=True)
@click.option("--state-dir", default=".pilotfish", show_default=True)
@click.option("--exit", "exit_after", is_flag=True, help="Stop the mesh after the tour.")
def demo(mode: str | None, ingress_port: int, state_dir: str, exit_after: bool) -> None:
    """Run Istio's Bookinfo sample in a local mesh and tour live routing changes."""
    console = Console()
    samples = find_samples()
    if samples is None:
        raise click.ClickException("samples/bookinfo not found (run from the repository root)")
    resolved = resolve_mode(mode, console)
    settings = RuntimeSettings(
        manifests=(
            str(samples / "bookinfo.yaml"),
            str(samples / "networking" / "bookinfo-gateway.yaml"),
        ),
        state_dir=Path(state_dir).resolve(),
        mode="transparent" if resolved == "transparent" else "explicit",
        profile="demo",
        ingress_port=ingress_port,
    )
    # The tour applies routing into the state dir's config: start from none.
    for old in settings.config_dir.glob("**/*.yaml") if settings.config_dir.exists() else ():
        old.unlink()
    code = asyncio.run(
        run_foreground(
            settings, console, after_start=lambda rt: tour(rt, samples, console, exit_after)
        )
    )
    sys.exit(code)
