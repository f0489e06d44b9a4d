"""The benchmarks of entrypoint: one module per measure, a shared runner and table.

`python benchmarks/run.py` (or `python -m benchmarks`) runs them all; see
runner.py for the list, harness.py for the shape of a measure, and
docs/performance.md for what each figure is and the results.
"""
