"""A benchmark process that the caller's shell cannot tilt.

ondine-otel and the OpenTelemetry SDK read ``OTEL_*`` and ``ONDINE_OTEL_*`` variables; a
sampler ratio or an exporter set in the shell would change what is measured, so they are
dropped here (the benchmark passes every setting it means as an argument). ``import ondine``
leaves the root logger at INFO with a Rich handler; it is raised to WARNING so ondine's per-run
INFO lines do not cost every variant a rendering, while telemetry warnings (what a user would
see) still render and are paid for. ondine's structlog loggers get the same WARNING level.
"""

from __future__ import annotations

import logging
import os

_PREFIXES = ("OTEL_", "ONDINE_OTEL_")


def prepare_process() -> list[str]:
    """Drop the telemetry variables and quiet INFO logging; returns the names dropped."""
    dropped = sorted(name for name in os.environ if name.startswith(_PREFIXES))
    for name in dropped:
        del os.environ[name]
    from ondine.utils import configure_logging

    configure_logging(level="WARNING")
    logging.getLogger().setLevel(logging.WARNING)
    # The benchmark's global tracer-provider switch (see variants.py) makes every later
    # set_tracer_provider() call warn; a real application's provider would not.
    logging.getLogger("opentelemetry.trace").setLevel(logging.ERROR)
    return dropped
