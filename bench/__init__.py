"""Benchmarks (`python -m bench`): load any S3 endpoint, and measure degraded reads, repair and the machine's limits."""
