"""Benchmarks: `make bench` runs every registered benchmark and writes docs/benchmarks.md."""
