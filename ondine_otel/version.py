"""Package version, read by hatch and by the CLI."""

__version__ = "0.1.0"
