"""The ADS simulator of the churn benchmark: ``bench.ads_sim`` plus endpoint markers.

Theory of operation: the same ``Simulation`` (delta ADS, as ``pilotfish agent``
speaks it by default) and the same command line as ``python -m bench.ads_sim``;
every ACKed EDS response also goes to a ``bench.churn_markers.MarkerTracker``,
which records when each proxy first held each change. JSON lines on stdout and
stdin, like ``bench.ads_sim``: ``started`` and ``full_push`` events, then one
reply per command::

    {"cmd": "begin", "markers": 6000}   # count changes 0..5999 from now on
    {"cmd": "progress"}                 # how many changes reached all their proxies
    {"cmd": "markers"}                  # per change: proxies, last ACK, completion
    {"cmd": "quit"}

The counting runs in the simulator's event loop, between the reads of its streams,
so a response's ACK time is the one the stream itself recorded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from bench.ads_sim import (
    Simulation,
    commands,
    config_from_args,
    emit,
    parser,
    process_usage,
    stdin_lines,
)
from bench.ads_stream import StreamState
from bench.churn_markers import MarkerTracker
from pilotfish.xds.types import ENDPOINT_TYPE

__all__ = ["main"]


def _stream_errors(sim: Simulation) -> dict[str, Any]:
    errors = [s for s in sim.streams if s.error is not None]
    return {"stream_errors": len(errors), "first_error": errors[0].error if errors else None}


async def _serve(sim: Simulation, tracker: MarkerTracker, reader: asyncio.StreamReader) -> None:
    async for command in commands(reader):
        name = command["cmd"]
        if name == "begin":
            subscriptions = [s.types[ENDPOINT_TYPE].subscribed for s in sim.streams]
            tracker.begin(int(command["markers"]), subscriptions)
            expected = tracker.expected
            emit(
                "begin",
                markers=len(tracker.count),
                expected_min=min(expected, default=0),
                expected_max=max(expected, default=0),
                **_stream_errors(sim),
            )
        elif name == "progress":
            emit(
                "progress",
                completed=tracker.completed(),
                markers=len(tracker.count),
                **_stream_errors(sim),
            )
        elif name == "markers":
            emit(
                "markers",
                count=list(tracker.count),
                expected=tracker.expected,
                complete_at=tracker.complete_at,
                last_at=tracker.last_at,
                parses=tracker.parses,
                **_stream_errors(sim),
                **process_usage(),
            )
        else:
            emit("error", message=f"unknown command {name!r}")


async def _run(sim: Simulation, tracker: MarkerTracker, full_push_timeout: float) -> None:
    reader = await stdin_lines()
    await sim.start()
    emit("started", pid=os.getpid(), started_at=sim.started_at, proxies=sim.config.proxies)
    try:
        emit("full_push", **await sim.wait_full_push(full_push_timeout), **process_usage())
        await _serve(sim, tracker, reader)
    finally:
        await sim.close()
        emit("bye", **process_usage())


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m bench.churn_sim`` (delta only)."""
    command_line = parser()
    command_line.prog = "python -m bench.churn_sim"
    args = command_line.parse_args(argv)
    config = config_from_args(args)
    if config.protocol != "delta":
        command_line.error("the churn simulator speaks delta ADS only")
    tracker = MarkerTracker(config.services, config.proxies)

    def on_ack(state: StreamState, response: Any, acked_at: float) -> None:
        tracker.on_ack(state.index, response, acked_at)

    sim = Simulation(dataclasses.replace(config, on_ack=on_ack))
    asyncio.run(_run(sim, tracker, args.full_push_timeout))


if __name__ == "__main__":
    main()
