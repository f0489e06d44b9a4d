.PHONY: bench bench-quick

# Side-by-side benchmarks (docs/performance.md): about two minutes; installs the peers it needs.
bench:
	.venv/bin/python benchmarks/run.py --json benchmarks/results.json --plot docs/restart-delays.png

# The same measures with few samples (what tests/test_benchmarks.py runs): about 40 s.
bench-quick:
	.venv/bin/python benchmarks/run.py --quick
