"""Benchmarks of ondine-otel's cost to the jobs it instruments (``make bench``)."""
