"""Grafana dashboards and provisioning for ondine-otel, generated from Python.

`python -m grafana.generate` writes the JSON and YAML files next to this package; the files in
the repository are what ships, and a test fails when they and the generator disagree.
"""
