# IFD — the two commands a new machine needs are `make demo` and `make test`.
SHELL := /bin/bash
# uv from PATH, else a private copy in .tools/ installed from PyPI into its own venv (works where
# the system Python refuses `pip install`, PEP 668).
UV ?= $(shell command -v uv 2>/dev/null || echo "$(CURDIR)/.tools/bin/uv")
PY ?= $(shell command -v python3.11 2>/dev/null || command -v python3)

.PHONY: setup browser demo test test-fast lint bench calibrate clean

# Install uv if missing (from PyPI), then the locked environment (uv.lock, --frozen: never re-resolve).
setup:
	@[ -x "$(UV)" ] || command -v uv >/dev/null 2>&1 || \
	  { $(PY) -m venv .tools && .tools/bin/pip install --quiet uv; }
	@$(UV) sync --frozen --quiet
	@echo "environment ready: $$($(UV) run python --version), ifd $$($(UV) run python -c 'import importlib.metadata as m; print(m.version("ifd"))')"

# Headless Chromium for the browser checks of tests/test_prefect_cockpit.py (Debian's package,
# /usr/bin/chromium). Installed only when missing and only as root; otherwise says how.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium (apt-get) for the browser tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || \
	    echo "WARNING: chromium could not be installed; the browser tests will be skipped"; \
	else \
	  echo "chromium is missing: install it with 'sudo apt-get install -y chromium' (Debian)"; \
	  echo "or run 'sudo make browser'; until then the browser tests are skipped"; \
	fi

# The main job on embedded default data (SYNTHETIC): 30 sessions, flows on the last 10, every verdict.
demo: setup
	$(UV) run ifd demo

# Test processes (pytest-xdist): one per core of the 2-core project machine. Each test file runs
# whole in one process (--dist loadfile), so its module fixtures are built once.
TEST_WORKERS ?= 2

# The whole test suite (slow tests included, as in CI). pytest's exit 5 (no tests) is a failure.
test: setup browser
	@$(UV) run pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=30; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests were collected"; exit 1; fi; exit $$rc

test-fast: setup
	$(UV) run pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

lint: setup
	$(UV) run ruff check . && $(UV) run ruff format --check . && $(UV) run lint-imports

bench: setup
	$(UV) run python bench/ingest.py
	$(UV) run python bench/engine.py
	$(UV) run python bench/live.py
	$(UV) run python bench/backtest.py

# The calibration study (SYNTHETIC markets with known truth; not in CI, about an hour on 2 cores):
# rates of the labeller, detection, intervals, A/B and extended test -> bench/out/calibration/.
calibrate: setup
	$(UV) run python bench/calibration.py

# Removes caches and benchmark output only; data/ holds raw files and paid downloads: never here.
clean:
	rm -rf bench/out/ .pytest_cache .ruff_cache
