"""Simulate M Envoy sidecars on real gRPC ADS streams and time how fast config reaches them.

Theory of operation: ``Simulation`` opens ``proxies`` ADS streams (``bench.ads_stream``
for State of the World, ``bench.ads_delta_stream`` for delta, as ``--protocol`` says)
spread over channels of ``streams_per_channel`` streams each, every channel its own
TCP connection. All timestamps are ``time.monotonic()``.

- Initial full push: a stream is complete once it has ACKed CDS, LDS and the EDS and
  RDS names those responses referenced; the full push time runs from the first
  connect attempt to the last stream completing.
- Convergence after a change: ``mark()`` records, per stream, the version of each
  type last received. ``wait_converged()`` then polls until the streams that have
  since received a *different* version of a type (the affected streams) have ACKed
  their latest response, and reports the time of the last such ACK. In ``all`` mode
  every stream must be affected; in ``affected`` mode the set is whatever the control
  plane pushed, considered final after ``quiet`` seconds without a new response of
  that type (the quiet time is not part of the reported time).

Run as a process (``python -m bench.ads_sim --target HOST:PORT [--tls-dir DIR] ...``;
with ``--tls-dir`` every channel is mTLS, see ``bench.ads_tls``) it speaks JSON
lines: events on stdout (``started``, ``full_push``, then one reply per command and
``bye``), commands on stdin::

    {"cmd": "mark"}
    {"cmd": "wait", "type": "RDS", "mode": "affected", "timeout": 60, "quiet": 1.0}
    {"cmd": "status"}
    {"cmd": "quit"}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import grpc

from bench.ads_delta_stream import AckObserver, DeltaNameCache, run_delta_stream
from bench.ads_stream import SIM_TYPES, NameCache, StreamState, run_stream, sim_node
from bench.ads_tls import ChannelFactory, ClientTls, channel_factory, plaintext_channel
from pilotfish.xds.types import ROUTE_TYPE, TYPE_SHORT_NAMES, VHDS_TYPE

__all__ = [
    "Mark",
    "SimConfig",
    "Simulation",
    "commands",
    "config_from_args",
    "emit",
    "main",
    "parser",
    "process_usage",
    "stdin_lines",
    "type_url_of",
]

WaitMode = Literal["all", "affected"]
_POLL_S = 0.02
_SHORT_TO_URL = {short: url for url, short in TYPE_SHORT_NAMES.items()}
# Route configurations reach delta streams over RDS and their virtual hosts over
# VHDS (``bench.ads_delta_stream``): a route change is measured on both.
_CARRIERS = {ROUTE_TYPE: (ROUTE_TYPE, VHDS_TYPE)}
_MARKED = (*SIM_TYPES, VHDS_TYPE)


def type_url_of(name: str) -> str:
    """Accept ``CDS``/``EDS``/``LDS``/``RDS`` or a full type URL."""
    return _SHORT_TO_URL.get(name.upper(), name)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Where to connect and how many proxies (``services`` picks each proxy's app label)."""

    target: str
    proxies: int
    services: int
    streams_per_channel: int = 50
    namespace: str = "default"
    # How channels are opened (plain text by default; ``bench.ads_tls`` for mTLS).
    open_channel: ChannelFactory = plaintext_channel
    # ADS variant: incremental ("delta", Envoy's DELTA_GRPC) or State of the World.
    protocol: Literal["delta", "sotw"] = "delta"
    # Delta only: told of every ACKed response (``bench.churn_sim`` tracks markers).
    on_ack: AckObserver | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    """A moment to measure from: per type URL, each stream's last received version."""

    at: float
    baseline: dict[str, tuple[str, ...]]


class Simulation:
    """Many simulated sidecars against one ADS server. Use ``start()`` then ``close()``."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.cache = NameCache()
        self.delta_cache = DeltaNameCache()
        self.streams = [
            StreamState(index=i, node_id=f"sim-{i}.{config.namespace}")
            for i in range(config.proxies)
        ]
        self.started_at = 0.0
        self._channels: list[grpc.aio.Channel] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Open the channels and start every stream; returns without waiting for data."""
        self.started_at = time.monotonic()
        per_channel = max(1, self.config.streams_per_channel)
        options = [
            ("grpc.max_receive_message_length", -1),
            # Without a local pool, channels to one target share a single connection.
            ("grpc.use_local_subchannel_pool", 1),
        ]
        for first in range(0, len(self.streams), per_channel):
            channel = self.config.open_channel(self.config.target, options)
            self._channels.append(channel)
            for state in self.streams[first : first + per_channel]:
                node = sim_node(state.index, self.config.services, self.config.namespace)
                if self.config.protocol == "delta":
                    run = run_delta_stream(
                        channel, state, node, self.delta_cache, self.config.on_ack
                    )
                else:
                    run = run_stream(channel, state, node, self.cache)
                task = asyncio.create_task(run)
                self._tasks.append(task)

    async def close(self) -> None:
        """Cancel every stream and close the channels."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for channel in self._channels:
            await channel.close(grace=None)
        self._tasks.clear()
        self._channels.clear()

    def full_push_report(self) -> dict[str, Any]:
        """Counts and times of the initial push as of now."""
        done = [s.complete_at - self.started_at for s in self.streams if s.complete_at is not None]
        errors = [s for s in self.streams if s.error is not None]
        report: dict[str, Any] = {
            "proxies": len(self.streams),
            "complete": len(done),
            "converged": len(done) == len(self.streams),
            "full_push_s": max(done) if len(done) == len(self.streams) and done else None,
            "stream_errors": len(errors),
            "first_error": errors[0].error if errors else None,
            "name_parses": self.cache.parses + self.delta_cache.parses,
            "protocol": self.config.protocol,
        }
        if done:
            ordered = sorted(done)
            report["first_complete_s"] = ordered[0]
            report["median_complete_s"] = statistics.median(ordered)
            report["p99_complete_s"] = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        report["acked_per_type"] = {
            TYPE_SHORT_NAMES[t]: sum(1 for s in self.streams if s.types[t].acked_version)
            for t in SIM_TYPES
        }
        return report

    async def wait_full_push(self, timeout: float) -> dict[str, Any]:
        """Wait until every stream is complete (or failed), at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.complete_at is not None or s.closed for s in self.streams):
                break
            await asyncio.sleep(_POLL_S)
        return self.full_push_report()

    def mark(self) -> Mark:
        """Remember each stream's last received version of every type, and the time."""
        baseline = {t: tuple(_received(s, t) for s in self.streams) for t in _MARKED}
        return Mark(at=time.monotonic(), baseline=baseline)

    def _changed_since(self, mark: Mark, type_url: str) -> list[StreamState]:
        changed: dict[int, StreamState] = {}
        for carrier in _CARRIERS.get(type_url, (type_url,)):
            before = mark.baseline[carrier]
            for s, v in zip(self.streams, before, strict=True):
                if _received(s, carrier) != v:
                    changed[s.index] = s
        return [changed[i] for i in sorted(changed)]

    async def wait_converged(
        self,
        mark: Mark,
        type_url: str,
        mode: WaitMode = "affected",
        timeout: float = 60.0,
        quiet: float = 1.0,
    ) -> dict[str, Any]:
        """Wait until the streams affected since ``mark`` ACKed their latest ``type_url``.

        Returns ``converged`` (bool), ``affected`` and ``acked`` counts, the monotonic
        time of the last ACK (``last_ack_at``) and ``since_mark_s``, plus how many
        streams saw a new version of each type (``changed_per_type``).
        """
        deadline = time.monotonic() + timeout
        converged = False
        affected: list[StreamState] = []
        while True:
            now = time.monotonic()
            affected = self._changed_since(mark, type_url)
            if affected and all(_up_to_date(s, type_url) for s in affected):
                if mode == "all":
                    converged = len(affected) == len(self.streams)
                else:
                    last_received = max(_latest(s, type_url, "received_at") for s in affected)
                    converged = now - last_received >= quiet
            if converged or now >= deadline:
                break
            await asyncio.sleep(_POLL_S)
        acked = [s for s in affected if _up_to_date(s, type_url)]
        last_ack = max((_latest(s, type_url, "acked_at") for s in acked), default=None)
        first_response = min((_first_since(s, type_url, mark) for s in affected), default=None)
        return {
            "type": TYPE_SHORT_NAMES.get(type_url, type_url),
            "mode": mode,
            "converged": converged,
            "affected": len(affected),
            "acked": len(acked),
            "mark_at": mark.at,
            "first_response_at": first_response,
            "last_ack_at": last_ack,
            "since_mark_s": None if last_ack is None else last_ack - mark.at,
            "changed_per_type": {
                TYPE_SHORT_NAMES[t]: len(self._changed_since(mark, t)) for t in SIM_TYPES
            },
            "stream_errors": sum(1 for s in self.streams if s.error is not None),
        }


def _received(stream: StreamState, type_url: str) -> str:
    found = stream.types.get(type_url)
    return "" if found is None else found.received_version


def _carried(stream: StreamState, type_url: str) -> list[Any]:
    """The stream's TypeStates of the types carrying ``type_url`` (RDS: RDS, VHDS)."""
    found = (stream.types.get(t) for t in _CARRIERS.get(type_url, (type_url,)))
    return [ts for ts in found if ts is not None]


def _up_to_date(stream: StreamState, type_url: str) -> bool:
    return all(ts.up_to_date for ts in _carried(stream, type_url))


def _latest(stream: StreamState, type_url: str, attribute: str) -> float:
    """The latest ``received_at``/``acked_at`` of the carriers (the last to arrive)."""
    return max(getattr(ts, attribute) for ts in _carried(stream, type_url))


def _first_since(stream: StreamState, type_url: str, mark: Mark) -> float:
    """The first response after ``mark`` of any carrier."""
    after = [ts.received_at for ts in _carried(stream, type_url) if ts.received_at >= mark.at]
    return min(after, default=stream.types[type_url].received_at)


def process_usage() -> dict[str, float]:
    """This process's CPU seconds (user + system) and peak RSS in MiB."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024.0,  # ru_maxrss is KiB on Linux
    }


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def commands(reader: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """The driver's commands, one JSON object with a ``cmd`` per line, until EOF or
    ``quit``; a line that is not one is reported as an error and skipped."""
    while True:
        line = await reader.readline()
        if not line:
            return
        try:
            command = json.loads(line)
            name = command["cmd"]
        except (ValueError, KeyError, TypeError) as exc:
            emit("error", message=f"bad command {line!r}: {exc}")
            continue
        if name == "quit":
            return
        yield command


async def _serve_commands(sim: Simulation, reader: asyncio.StreamReader) -> None:
    mark: Mark | None = None
    async for command in commands(reader):
        name = command["cmd"]
        if name == "mark":
            mark = sim.mark()
            emit("mark", at=mark.at)
        elif name == "status":
            emit("status", **sim.full_push_report(), **process_usage())
        elif name == "wait":
            if mark is None:
                emit("error", message="wait before mark")
                continue
            mode: WaitMode = "all" if command.get("mode") == "all" else "affected"
            result = await sim.wait_converged(
                mark,
                type_url_of(str(command.get("type", "RDS"))),
                mode=mode,
                timeout=float(command.get("timeout", 60.0)),
                quiet=float(command.get("quiet", 1.0)),
            )
            emit("wait", **result)
        else:
            emit("error", message=f"unknown command {name!r}")


async def _run(config: SimConfig, full_push_timeout: float) -> None:
    sim = Simulation(config)
    reader = await stdin_lines()
    await sim.start()
    emit("started", pid=os.getpid(), started_at=sim.started_at, proxies=config.proxies)
    try:
        emit("full_push", **await sim.wait_full_push(full_push_timeout), **process_usage())
        await _serve_commands(sim, reader)
    finally:
        await sim.close()
        emit("bye", **process_usage())


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench.ads_sim`` (``bench.churn_sim`` adds to it)."""
    parser = argparse.ArgumentParser(prog="python -m bench.ads_sim", description=__doc__)
    parser.add_argument("--target", required=True, help="ADS server, HOST:PORT (loopback)")
    parser.add_argument("--proxies", type=int, required=True, help="number of ADS streams")
    parser.add_argument("--services", type=int, required=True, help="services in the mesh")
    parser.add_argument("--streams-per-channel", type=int, default=50)
    parser.add_argument("--namespace", default="default")
    parser.add_argument(
        "--protocol",
        choices=["delta", "sotw"],
        default="delta",
        help="ADS variant, as Envoy's DELTA_GRPC or GRPC api_type",
    )
    parser.add_argument("--full-push-timeout", type=float, default=120.0)
    parser.add_argument(
        "--tls-dir", type=Path, default=None, help="mTLS: root.pem, chain.pem, key.pem here"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The ``SimConfig`` a parsed ``parser()`` command line describes."""
    tls = ClientTls.from_dir(args.tls_dir) if args.tls_dir is not None else None
    return SimConfig(
        target=args.target,
        proxies=args.proxies,
        services=args.services,
        streams_per_channel=args.streams_per_channel,
        namespace=args.namespace,
        open_channel=channel_factory(tls),
        protocol="sotw" if args.protocol == "sotw" else "delta",
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m bench.ads_sim``."""
    args = parser().parse_args(argv)
    asyncio.run(_run(config_from_args(args), args.full_push_timeout))


if __name__ == "__main__":
    main()
