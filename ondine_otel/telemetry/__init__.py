"""Run telemetry: run state, spans, metrics and per-call aggregation, label caps, names."""
