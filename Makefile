# Every target creates the virtualenv and installs the pinned dependencies itself,
# so a fresh clone needs nothing but python3 (3.11+).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2

.PHONY: install run sandbox test lint format clean system-packages

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/botter run --sandbox --demo

sandbox: $(STAMP)
	$(BIN)/botter sandbox

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)
	$(BIN)/mypy

# nginx, HAProxy, ip(8) and promtool are driven for real by the tests; installed when missing.
system-packages:
	bash scripts/ensure-system-packages

test: lint system-packages
	$(BIN)/pytest -n $(PYTEST_WORKERS)

format: $(STAMP)
	$(BIN)/ruff format src tests $(wildcard bench)
	$(BIN)/ruff check --fix src tests $(wildcard bench)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
