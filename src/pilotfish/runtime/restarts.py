"""The one restart loop for every process the runtime supervises: pods' sidecars
and apps, and gateways.

Theory of operation: ``supervise_restarts`` waits for the current process to
end, lets its owner record the exit (``exited``, which may end the loop: an
app that completes), then waits the back-off delay of ``agent.backoff`` and
respawns. A run that stayed up for ``policy.reset_after`` seconds was healthy,
so its death starts the back-off again from the first delay
(``failures_after_exit``); only consecutive quick deaths wait longer and
longer. A process that cannot even be started (``respawn`` raising
``OSError``) counts as one that exited at once with code 127, so it is retried
with the same growing back-off instead of being given up on. The loop returns
as soon as its owner is stopping, checked after every wait.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pilotfish.agent.backoff import BackoffPolicy, failures_after_exit, restart_delay
from pilotfish.runtime.supervised import Supervised

__all__ = ["CANNOT_EXECUTE", "RestartHooks", "supervise_restarts"]

#: The exit code shown for a process that could not be started (as a shell does).
CANNOT_EXECUTE = 127


@dataclass(frozen=True)
class RestartHooks:
    """What the loop needs of the process's owner."""

    #: The process running now (None: it could not be started).
    current: Callable[[], Supervised | None]
    #: True once the owner stops (or no longer wants the process).
    stopping: Callable[[], bool]
    #: Record the exit (code None: unknown); False ends the loop (nothing to restart).
    exited: Callable[[int | None], Awaitable[bool]]
    #: About to wait ``delay`` seconds before restarting (for messages and logs).
    restarting: Callable[[int | None, float], None]
    #: Wait ``delay`` seconds; False if stopping began meanwhile.
    sleep: Callable[[float], Awaitable[bool]]
    #: Start the process again (it becomes ``current()``); may raise ``OSError``.
    respawn: Callable[[], Awaitable[None]]
    #: ``respawn`` raised: report it (the loop then retries with back-off).
    cannot_start: Callable[[OSError], None]


async def supervise_restarts(
    hooks: RestartHooks,
    policy: BackoffPolicy,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Restart the process whenever it ends, until ``hooks.stopping()`` or ``exited`` says no."""
    failures = 0
    while not hooks.stopping():
        began = clock()
        proc = hooks.current()
        code = await proc.wait() if proc is not None else CANNOT_EXECUTE
        if hooks.stopping():
            return
        uptime = clock() - began
        if not await hooks.exited(code):
            return
        failures = failures_after_exit(policy, failures, uptime)
        delay = restart_delay(policy, failures)
        hooks.restarting(code, delay)
        if not await hooks.sleep(delay):
            return
        try:
            await hooks.respawn()
        except OSError as exc:
            hooks.cannot_start(exc)
