"""The four ways in: `instrument()`, `OndineInstrumentor`, `OtelObserver`, `with_observer("otel")`.

Each is a thin adapter: it reads its settings and hands them to the process's runtime.
"""
