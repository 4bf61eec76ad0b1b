# Thin wrapper: every target echoes the command it runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Optional dependencies: the tests and the development tools. A service needs neither:
# `make install EXTRAS=` (README, "Running as a systemd service").
EXTRAS ?= test,dev
# The real OpenID provider the single sign-on tests run (npm; skipped without Node).
OIDC   := tests/oidc_provider
OIDC_STAMP := $(OIDC)/node_modules/.installed

.PHONY: install run test lint fmt typecheck bench check clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.$(if $(EXTRAS),[$(EXTRAS)])'
	touch $(STAMP)

$(OIDC_STAMP): $(OIDC)/package.json $(OIDC)/package-lock.json
	@if command -v npm >/dev/null; then \
		echo "npm ci --prefix $(OIDC)"; npm ci --prefix $(OIDC) --no-audit --no-fund --silent \
		&& touch $(OIDC_STAMP); \
	else echo "npm not found: the single sign-on tests will skip (apt-get install nodejs npm)"; fi

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python app.py serve

test: $(STAMP) $(OIDC_STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term --cov-fail-under=90

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy scim storage admin server app.py

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage $(OIDC)/node_modules
