"""Test-only helpers: polling, free ports, an in-process OTLP receiver, real Prometheus."""
