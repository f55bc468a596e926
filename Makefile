# The few commands a contributor needs. `make run` and `make test` work on a fresh
# machine: they create .venv and install the package with its dev tools first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-slow lint types check bench bench-quick serve clean dashboard check-dashboard

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

PORT      ?= 8000
DASH_ROOT ?= .dash

run: install              ## the main job: an example training run into .dash/, then the dashboard over it
	$(BIN)/python examples/quickstart.py --dash-root $(DASH_ROOT)
	@echo "serving the dashboard over $(DASH_ROOT)/: open http://127.0.0.1:$(PORT)/ (Ctrl-C stops it)"
	$(BIN)/ml-dash serve --root $(DASH_ROOT) --port $(PORT)

test: install             ## the fast test suite (what the README gives)
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: install        ## soak, crash and load tests (CI runs them too)
	$(BIN)/python -m pytest -m slow -q --durations=15

lint: install
	$(BIN)/ruff check .

types: install
	$(BIN)/mypy --strict

check: lint types test test-slow

bench: install            ## full benchmarks; figures go in BENCHMARKS.md
	$(BIN)/python benchmarks/bench_local.py
	$(BIN)/python benchmarks/bench_remote.py
	$(BIN)/python benchmarks/bench_mongo.py

bench-quick: install      ## a small smoke run of the benchmarks
	$(BIN)/python benchmarks/bench_local.py --quick
	$(BIN)/python benchmarks/bench_remote.py --quick
	$(BIN)/python benchmarks/bench_mongo.py --quick
	$(BIN)/python benchmarks/bench_live.py --quick

serve: install            ## serve the local .dash folder on http://127.0.0.1:8000
	$(BIN)/ml-dash serve

dashboard:                ## rebuild the dashboard bundle after changing frontend/ (Node 20, npm)
	cd frontend && npm ci && npm test && npm run build

check-dashboard:          ## fail if the committed bundle differs from a fresh build of frontend/
	bash frontend/check-bundle.sh

clean:
	rm -rf $(VENV) .dash .pytest_cache .mypy_cache .ruff_cache
