"""Waiting for SIGTERM/SIGINT in a sample server whose work runs on other threads.

A gRPC server serves from its own threads while the main thread waits. A
signal sent to the process may be delivered to any thread that does not block
it; Python runs its handler only on the main thread, and a main thread blocked
in ``threading.Event.wait`` is not woken when the signal lands elsewhere, so
such a server could miss a SIGTERM and never stop. Instead the stop signals
are blocked before any server thread exists (threads inherit the mask) and
the main thread takes them with ``sigwait``; one sent early stays pending
until then.
"""

from __future__ import annotations

import signal

__all__ = ["STOP_SIGNALS", "block_stop_signals", "wait_for_stop_signal"]

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def block_stop_signals() -> None:
    """Block the stop signals in this thread and every thread it starts later."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def wait_for_stop_signal() -> int:
    """Wait until a stop signal is pending (see ``block_stop_signals``); returns it."""
    return signal.sigwait(STOP_SIGNALS)
