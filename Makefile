# IFD — the two commands a new machine needs are `make demo` and `make test`.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PY := python3.11

.PHONY: setup demo test test-fast lint bench clean

# Install uv if missing (from PyPI), then the locked environment (uv.lock, --frozen: never re-resolve).
setup:
	@command -v uv >/dev/null 2>&1 || [ -x "$(HOME)/.local/bin/uv" ] || $(PY) -m pip install --user --quiet uv
	@$(UV) sync --frozen --quiet
	@echo "environment ready: $$($(UV) run python --version), ifd $$($(UV) run python -c 'import importlib.metadata as m; print(m.version("ifd"))')"

# The main job on embedded default data (SYNTHETIC): simulate 21 sessions, ingest, summarize.
demo: setup
	$(UV) run ifd demo

# The whole test suite (slow tests included, as in CI).
test: setup
	$(UV) run pytest -q

test-fast: setup
	$(UV) run pytest -q -m "not slow"

lint: setup
	$(UV) run ruff check . && $(UV) run ruff format --check .

bench: setup
	$(UV) run python bench/ingest.py

clean:
	rm -rf data/ bench/out/ .pytest_cache
