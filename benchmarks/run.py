"""entrypoint side by side with tini, dumb-init, supervisord and honcho: the entry of `make bench`.

    python benchmarks/run.py [--quick] [--json FILE] [--plot FILE] [--only A,B] [--source DIR]

The same as `python -m benchmarks`. The measures, the runner and the optional
ones are described in benchmarks/runner.py; what each figure is, and the
results, in docs/performance.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a file: this folder must not shadow the standard library (signal, ...);
# the package is imported from the checkout.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "benchmarks":
    del sys.path[0]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from benchmarks.runner import main  # noqa: E402 - after the path is set

if __name__ == "__main__":
    sys.exit(main())
