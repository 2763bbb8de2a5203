# The README's two commands: `make serve` and `make test`. Each installs what
# it needs into .venv first (only when pyproject.toml changed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

INSPECTOR := tests/inspector/node_modules/.bin/mcp-inspector

.PHONY: serve test lint clean

# Install output goes to stderr: on stdio, stdout belongs to the MCP protocol.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/python -m pip install --quiet --upgrade pip >&2
	@$(BIN)/python -m pip install --quiet -e . >&2
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

serve: $(VENV)/.installed
	@$(BIN)/lancemem serve $(ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check server tests benchmarks

# The MCP Inspector CLI (npm), pinned by tests/inspector/package-lock.json.
$(INSPECTOR): tests/inspector/package.json tests/inspector/package-lock.json
	npm ci --prefix tests/inspector --no-audit --no-fund --loglevel=error
	touch $@

test: lint $(INSPECTOR)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/inspector/node_modules
