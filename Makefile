# Developer entry points; CI (.ci/run) drives the same targets.
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

# Keep litellm (pulled in by ondine) from fetching its model cost map at import time.
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: venv phoenix demo test test-lowest lint bench bench-instructions reliability clean

venv: $(VENV)/.installed

# Stamp file: reinstall only when the dependency list changes.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test,bench]'
	touch $@

# Arize Phoenix (a trace store the tests feed) in a virtualenv of its own: its dependencies
# clash with ondine's, and the tests only run its server.
PHOENIX_VENV := .venv-phoenix
phoenix: $(PHOENIX_VENV)/.installed
$(PHOENIX_VENV)/.installed: tests/phoenix-requirements.txt
	test -x $(PHOENIX_VENV)/bin/python || python3 -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/python -m pip install -q --upgrade pip
	$(PHOENIX_VENV)/bin/python -m pip install -q -r tests/phoenix-requirements.txt
	touch $@

demo: venv
	$(VENV)/bin/ondine-otel demo

# Grafana's TraceQL grammar (npm), for the test that parses the dashboards' TraceQL with it.
TRACEQL_GRAMMAR := grafana/lezer/node_modules/.package-lock.json
$(TRACEQL_GRAMMAR): grafana/lezer/package-lock.json
	npm ci --prefix grafana/lezer --no-audit --no-fund

test: venv phoenix $(TRACEQL_GRAMMAR)
	$(PY) -m pytest $(PYTEST_ARGS)

# The unit and integration suites once more, every direct dependency at the lowest version
# pyproject.toml allows (uv's lowest-direct resolution): the declared floors must really work.
LOWEST_VENV := .venv-lowest
LOWEST_SUITES ?= tests/unit tests/integration --ignore=tests/unit/test_benchmark_overhead.py \
  --ignore=tests/unit/test_benchmark_instructions.py
test-lowest: venv
	rm -rf $(LOWEST_VENV)
	$(VENV)/bin/uv venv --quiet --python $(PY) $(LOWEST_VENV)
	$(VENV)/bin/uv pip install --quiet --python $(LOWEST_VENV)/bin/python \
		--resolution lowest-direct -e '.[test]'
	$(VENV)/bin/uv pip list --python $(LOWEST_VENV)/bin/python 2>/dev/null \
		| grep -E '^(ondine|opentelemetry|prometheus|rich|wrapt)' || true
	$(LOWEST_VENV)/bin/python -m pytest $(LOWEST_SUITES) $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m mypy tests/support
	$(PY) -m mypy benchmarks

# The timed bench, then the same runs counted in instructions under callgrind (needs the
# Debian package valgrind; ~45 min on 2 CPUs): the figure this machine's noise cannot move.
bench: venv
	$(PY) -m benchmarks.overhead
	$(MAKE) bench-instructions

bench-instructions: venv
	$(PY) -m benchmarks.instructions

# The fault-injection suite alone, recording its figures, then docs/reliability.md from them
# (the table is regenerated even when a test fails, and says which).
RELIABILITY_FIGURES := docs/reliability-figures.json
reliability: venv
	ONDINE_RELIABILITY_FIGURES=$(RELIABILITY_FIGURES) $(PY) -m pytest tests/reliability $(PYTEST_ARGS); \
	status=$$?; $(PY) -m tests.reliability.report $(RELIABILITY_FIGURES) docs/reliability.md && exit $$status

clean:
	rm -rf $(VENV) $(LOWEST_VENV) $(PHOENIX_VENV) build dist .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
