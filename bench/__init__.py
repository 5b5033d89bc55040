"""Benchmarks: srtm against the peers and the floor (see docs/benchmarks.md)."""
