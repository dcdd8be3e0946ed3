"""How many of Istio's ``samples/`` YAML files ``pilotfish analyze`` accepts, one file at a time.

A file is accepted when analyzing it alone gives no error (warnings and info
lines are fine). Not a benchmark of speed: a measure of coverage, run by hand::

    git --git-dir=<istio repo>/.git archive HEAD samples | tar x -C /tmp/istio
    python -m bench.istio_samples /tmp/istio/samples [-v]

``-v`` prints each rejected file with its first error.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pilotfish.api.analyze import analyze_paths

__all__ = ["main"]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml"))
    accepted = 0
    for path in files:
        errors = [d for d in analyze_paths([str(path)]) if d.is_error]
        if not errors:
            accepted += 1
        elif "-v" in argv:
            print(f"rejected {path.relative_to(root)}: {errors[0].format()}")
    print(f"{accepted} of {len(files)} accepted")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
