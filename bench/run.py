"""Run the benchmarks: ``python -m bench.run [--quick] [--only NAME]``.

Each benchmark prints a table and writes ``bench/results/<name>.json``
(``<name>_quick.json`` with ``--quick``, ``<name>_custom.json`` when sizes are
overridden) holding machine info, parameters, numbers and a UTC timestamp.
The exit status is 1 only when a benchmark could not run at all; slow numbers are
reported, never turned into a failure.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType

from bench import (
    controlplane_churn,
    controlplane_replicas,
    dataplane,
    dataplane_modes,
    dataplane_modes_table,
    fuzz_inputs,
    sidecar_scoping,
    telemetry_ab,
    xds_realism,
)
from bench.controlplane_scale import FULL, PROTOCOLS, QUICK, TRANSPORTS, ScaleParams, run_scale
from bench.procstats import machine_info, utc_timestamp
from bench.report import dataplane_table, scale_table, write_result
from bench.sidecar_scoping import scoping_table
from pilotfish.cli.tables import print_table

__all__ = ["BENCHMARKS", "Benchmark", "main"]

_REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A named benchmark: ``run(args, console)`` returns numbers; ``table`` renders a payload.

    ``run`` reports a run that could not complete with an ``error`` key in its numbers.

    ``parameters(args)`` describes the sizes used, so a run that fails still records them.
    """

    name: str
    parameters: Callable[[argparse.Namespace], dict[str, Any]]
    run: Callable[[argparse.Namespace, Console], dict[str, Any]]
    table: Callable[[dict[str, Any]], RenderableType]


def _scale_params(args: argparse.Namespace) -> ScaleParams:
    params = QUICK if args.quick else FULL
    overrides = {
        key: value
        for key, value in (
            ("services", args.services),
            ("proxies", args.proxies),
            ("streams_per_channel", args.streams_per_channel),
            ("transports", ("mtls",) if args.tls else _names(args.transports, TRANSPORTS)),
            ("protocols", _names(args.ads_protocols, PROTOCOLS, "--ads-protocols")),
            ("curve", _curve(args.curve)),
        )
        if value is not None
    }
    return dataclasses.replace(params, **overrides)


def _names(
    text: str | None, allowed: tuple[str, ...], option: str = "--transports"
) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in names if p not in allowed]
    if unknown or not names:
        raise SystemExit(f"{option}: expected some of {', '.join(allowed)}, got {text!r}")
    return names


def _curve(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        counts = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise SystemExit(
            f"--curve: expected service counts such as 100,1000, got {text!r}"
        ) from None
    if any(n < 1 for n in counts):
        raise SystemExit(f"--curve: service counts must be positive, got {text!r}")
    return counts


def _run_controlplane_scale(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    return run_scale(_scale_params(args), log=console.log, executable=args.pilotfish)


def _churn_params(args: argparse.Namespace) -> controlplane_churn.ChurnParams:
    params = controlplane_churn.QUICK if args.quick else controlplane_churn.FULL
    overrides = {
        key: value
        for key, value in (
            ("services", args.services),
            ("proxies", args.proxies),
            ("streams_per_channel", args.streams_per_channel),
        )
        if value is not None
    }
    return dataclasses.replace(params, **overrides)


def _run_controlplane_churn(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    return controlplane_churn.run_churn(
        _churn_params(args), log=console.log, executable=args.pilotfish
    )


def _replicas_params(args: argparse.Namespace) -> controlplane_replicas.ReplicasParams:
    return controlplane_replicas.QUICK if args.quick else controlplane_replicas.FULL


def _run_controlplane_replicas(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    # A real mesh (etcd addon, two replicas): run it under the host's mesh lock.
    return controlplane_replicas.run_replicas(_replicas_params(args), log=console.log)


def _realism_params(args: argparse.Namespace) -> xds_realism.RealismParams:
    params = xds_realism.QUICK if args.quick else xds_realism.FULL
    if args.services is not None:
        params = dataclasses.replace(params, services=args.services)
    if args.proxies is not None:
        params = dataclasses.replace(params, proxies=args.proxies)
    return params


def _run_xds_realism(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    return xds_realism.run_realism(
        _realism_params(args), log=console.log, executable=args.pilotfish
    )


def _dataplane_params(args: argparse.Namespace) -> dataplane.DataplaneParams:
    params = dataplane.QUICK if args.quick else dataplane.FULL
    if args.load_generator is not None:
        params = dataclasses.replace(params, load_generator=args.load_generator)
    return params


def _run_dataplane(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    return dataplane.run_dataplane(
        _dataplane_params(args), log=console.log, executable=args.pilotfish
    )


def _modes_params(args: argparse.Namespace) -> dataplane_modes.ModesParams:
    return dataplane_modes.QUICK if args.quick else dataplane_modes.FULL


def _run_dataplane_modes(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    # Root only (pod network namespaces): run_modes reports "skipped: needs root" otherwise.
    return dataplane_modes.run_modes(_modes_params(args), log=console.log)


def _scoping_params(args: argparse.Namespace) -> sidecar_scoping.ScopingParams:
    params = sidecar_scoping.QUICK if args.quick else sidecar_scoping.FULL
    if args.services is not None:
        params = dataclasses.replace(params, services=args.services)
    return params


def _run_sidecar_scoping(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    return sidecar_scoping.run_scoping(_scoping_params(args), log=console.log)


def _ab_params(args: argparse.Namespace) -> telemetry_ab.AbParams:
    return telemetry_ab.QUICK if args.quick else telemetry_ab.FULL


def _run_telemetry_ab(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    return telemetry_ab.run_telemetry_ab(
        _ab_params(args), log=console.log, executable=args.pilotfish
    )


def _fuzz_params(args: argparse.Namespace) -> fuzz_inputs.FuzzParams:
    return fuzz_inputs.QUICK if args.quick else fuzz_inputs.FULL


def _run_fuzz_inputs(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    numbers = fuzz_inputs.run_fuzz(_fuzz_params(args), log=console.log)
    failed = sum(fuzz_inputs.failures(numbers[p]) for p in ("analyze", "api"))
    if failed:
        numbers["error"] = f"{failed} crashes or invariant violations (see the examples)"
    return numbers


BENCHMARKS = (
    Benchmark(
        "controlplane_scale",
        lambda args: dataclasses.asdict(_scale_params(args)),
        _run_controlplane_scale,
        scale_table,
    ),
    Benchmark(
        "controlplane_churn",
        lambda args: dataclasses.asdict(_churn_params(args)),
        _run_controlplane_churn,
        controlplane_churn.churn_table,
    ),
    Benchmark(
        "controlplane_replicas",
        lambda args: dataclasses.asdict(_replicas_params(args)),
        _run_controlplane_replicas,
        controlplane_replicas.replicas_table,
    ),
    Benchmark(
        "xds_realism",
        lambda args: dataclasses.asdict(_realism_params(args)),
        _run_xds_realism,
        xds_realism.realism_table,
    ),
    Benchmark(
        "dataplane",
        lambda args: dataclasses.asdict(_dataplane_params(args)),
        _run_dataplane,
        dataplane_table,
    ),
    Benchmark(
        "dataplane_modes",
        lambda args: dataclasses.asdict(_modes_params(args)),
        _run_dataplane_modes,
        dataplane_modes_table.modes_table,
    ),
    Benchmark(
        "telemetry_ab",
        lambda args: dataclasses.asdict(_ab_params(args)),
        _run_telemetry_ab,
        telemetry_ab.ab_table,
    ),
    Benchmark(
        "sidecar_scoping",
        lambda args: dataclasses.asdict(_scoping_params(args)),
        _run_sidecar_scoping,
        scoping_table,
    ),
    Benchmark(
        "fuzz_inputs",
        lambda args: dataclasses.asdict(_fuzz_params(args)),
        _run_fuzz_inputs,
        fuzz_inputs.fuzz_table,
    ),
)


def _result_name(name: str, args: argparse.Namespace) -> str:
    if name == "controlplane_scale" and args.tls:
        name = f"{name}_mtls"
    if any(
        v is not None
        for v in (
            args.services,
            args.proxies,
            args.streams_per_channel,
            args.ads_protocols,
            args.transports,
            args.curve,
            args.pilotfish,
            args.load_generator,
        )
    ):
        return f"{name}_custom"
    return f"{name}_quick" if args.quick else name


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks; return the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes, not hours)")
    parser.add_argument("--only", choices=[b.name for b in BENCHMARKS], help="run one benchmark")
    parser.add_argument("--services", type=int, help="override N (scale benchmark)")
    parser.add_argument("--proxies", type=int, help="override M (scale benchmark)")
    parser.add_argument("--streams-per-channel", type=int, help="ADS streams per gRPC channel")
    parser.add_argument(
        "--tls",
        action="store_true",
        help="scale benchmark over the xDS mTLS port only (same as --transports mtls)",
    )
    parser.add_argument(
        "--transports",
        help="scale benchmark transports, comma-separated (default: mtls,plaintext)",
    )
    parser.add_argument(
        "--curve",
        help="scale benchmark curve: service counts, comma-separated ('' for none; "
        "default 100,1000,5000 at full size)",
    )
    parser.add_argument(
        "--ads-protocols",
        help="ADS protocols the scale benchmark measures, comma-separated (default: delta,sotw)",
    )
    parser.add_argument(
        "--pilotfish", type=Path, help="pilotfish command to benchmark (default: this venv's)"
    )
    parser.add_argument(
        "--load-generator",
        choices=["hey", "python"],
        help="data-plane load generator (default: hey if available, else python)",
    )
    args = parser.parse_args(argv)

    console = Console()
    machine = machine_info(_REPO)
    status = 0
    for bench in BENCHMARKS:
        if args.only and bench.name != args.only:
            continue
        console.rule(bench.name)
        payload: dict[str, Any] = {
            "benchmark": bench.name,
            "quick": bool(args.quick),
            "timestamp": utc_timestamp(),
            "machine": machine,
            "error": None,
        }
        numbers = bench.run(args, console)
        payload["error"] = numbers.pop("error", None)
        if payload["error"] is not None:
            status = 1
        payload["parameters"] = numbers.pop("parameters", None) or bench.parameters(args)
        payload["results"] = numbers
        print_table(console, bench.table(payload))
        path = write_result(_result_name(bench.name, args), payload)
        console.print(f"wrote {path.relative_to(_REPO) if path.is_relative_to(_REPO) else path}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
