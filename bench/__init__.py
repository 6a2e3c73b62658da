"""Benchmarks: `make bench` runs `python -m bench.run` (ours vs naive vs no-op vs permitted)."""
