"""The ondine versions this instrumentation supports (read by OTel auto-instrumentation)."""

_instruments = ("ondine >= 2.1, < 3",)
