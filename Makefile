.PHONY: bench

# Side-by-side benchmarks (docs/performance.md): about a minute; installs the peers it needs.
bench:
	.venv/bin/python benchmarks/run.py --json benchmarks/results.json --plot docs/restart-delays.png
