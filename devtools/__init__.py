"""Local tooling for `make run`, `make test` and the benchmarks (not shipped to production)."""
