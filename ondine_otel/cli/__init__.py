"""The `ondine-otel` command: check, demo and console rendering."""
