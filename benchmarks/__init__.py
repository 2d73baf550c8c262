"""Benchmarks of ondine-otel's cost to the jobs it instruments (``make bench``)."""

import os

# litellm (pulled in by ondine) must not fetch its model cost map at import time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
