"""Keeping data at full redundancy: fragment health, scans, rebuilds, garbage collection, jobs."""
