"""A sample server's main thread takes SIGTERM even while other threads run."""

from __future__ import annotations

import subprocess
import sys

# Threads started after the mask is set inherit it, so the process-directed
# SIGTERM can only be taken by sigwait on the main thread; before the fix a
# signal that landed on a busy thread left Event.wait blocked for good.
PROGRAM = """
import os, signal, threading
from pilotfish.samples.stop_signals import block_stop_signals, wait_for_stop_signal
block_stop_signals()
busy = [threading.Thread(target=threading.Event().wait, daemon=True) for _ in range(4)]
for t in busy:
    t.start()
os.kill(os.getpid(), signal.SIGTERM)
print(int(wait_for_stop_signal()))
"""


def test_a_stop_signal_reaches_the_waiting_main_thread() -> None:
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "15"
