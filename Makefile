# The two commands a newcomer needs: `make run` (the demo) and `make test` (the suite).
# Both bootstrap .venv from the pinned lock files on a machine with nothing but Python 3.11+.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test docs lint format bench capacity chaos clean schemas lock promtool

# Every pin checked against its hash; then the project itself, editable (the console script).
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

## the demo: private Redis if REDIS_URL does not answer, portal simulator, worker, beat, Flower, demo load
run: $(STAMP)
	$(PY) -m devtools.demo

## the whole suite against a real Redis (private server when none answers) and the simulator
test: $(STAMP) promtool
	$(PY) -m pytest $(PYTEST_ARGS)

## best effort, never fails: promtool (Debian's `prometheus` package) for the alert-rule tests,
## which skip with a printed reason where it cannot be installed
promtool:
	@command -v promtool >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && { apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
	       || { apt-get update -qq >/dev/null 2>&1 \
	            && apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; }; }; } \
	  || echo "promtool not installed (needs root and apt-get): the alert-rule tests will skip"

## the documentation site into site/ (mkdocs.yml): strict, so a broken link or anchor, a missing
## page or a setting without its `#:` comment fails; then a check that no page loads anything
## from the network. Offline: only the bootstrap above installs from PyPI.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet
	$(PY) -m devtools.docs_offline site

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## side-by-side throughput table (ours vs naive vs no-op task vs the portal's permitted rate)
bench: $(STAMP)
	$(PY) -m bench.run

## Redis commands and CPU per delivered confirmation, worker CPU per 1,000 (~1 minute)
capacity: $(STAMP)
	$(PY) -m bench.capacity

## the longer soak of the reliability scenarios
chaos: $(STAMP)
	CHAOS_SCALE=5 $(PY) -m pytest tests/reliability -s $(PYTEST_ARGS)

## re-resolve both lock files from pyproject.toml with hashes, for every platform (needs PyPI).
## Existing pins are kept unless LOCK_ARGS=--upgrade (or --upgrade-package NAME).
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet --custom-compile-command "make lock"
## the payload schemas for the default settings (worker/schemas/, docs/schemas/): after a rule changes
schemas: $(STAMP)
	$(PY) -m worker.ingest.schema

lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) $(LOCK_ARGS) \
		--output-file requirements-dev.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra worker --extra flower --extra sentry $(LOCK_FLAGS) $(LOCK_ARGS) \
		--constraint requirements-dev.lock --output-file requirements.lock

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
