# Developer and CI entry points. Every target builds .venv itself when it is missing and
# reinstalls (rebuilding the compiled AMI parser) when pyproject.toml, setup.py or
# callcenter/ami/_speedups.pyx changed since the last install.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test bench lint venv

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py callcenter/ami/_speedups.pyx
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The whole helpline on this machine: simulated PBX, synthetic callers, console on :8080.
demo: $(STAMP)
	$(VENV)/bin/callcenter demo

# Two pytest workers: most end-to-end tests wait on simulated PBX time, so two share a
# 2-CPU CI box well and keep .ci/run inside its budget. PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 2

test: $(STAMP)
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# Each benchmark is a standalone script; they run one after another, stopping at the first
# that fails.
bench: $(STAMP)
	@set -e; found=0; for script in $$(ls benchmarks/bench_*.py 2>/dev/null | sort); do \
		found=1; echo "== $$script"; $(VENV)/bin/python "$$script"; \
	done; \
	if [ $$found -eq 0 ]; then echo "no benchmarks/bench_*.py yet"; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
