# Bürger-ID. `make demo` runs the system; `make test` runs the whole suite. Needs Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo demo-check test lint format bench docs i18n screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

# The KERN UX stylesheet and fonts and axe-core, pinned in package-lock.json; without npm the
# pages use their own stylesheet and the accessibility checks are skipped (tools/vendor.py).
install: $(STAMP)
	$(BIN)/python tools/vendor.py

demo: install
	$(BIN)/python -m demo_portal

demo-check: install
	$(BIN)/python -m demo_portal --check

test: install lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff format --check idserver demo_portal bench tests tools
	$(BIN)/ruff check idserver demo_portal bench tests tools
	$(BIN)/mypy idserver
	$(BIN)/bandit -r idserver demo_portal -q -ll
	$(BIN)/python tools/dependency_audit.py

format: install
	$(BIN)/ruff format idserver demo_portal bench tests tools
	$(BIN)/ruff check --fix idserver demo_portal bench tests tools

bench: install
	$(BIN)/python -m bench

docs: install
	$(BIN)/python -c 'import pathlib, idserver.config as c; [p.write_text(c.with_settings_table(p.read_text())) for p in map(pathlib.Path, ("README.md", "docs/operations.md"))]'

i18n: install
	$(BIN)/python -m idserver.i18n update

screenshots: install
	E2E_DOCS_SCREENSHOTS=1 $(BIN)/python -m pytest tests/e2e -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache node_modules idserver/static/vendor demo_portal/static/vendor
