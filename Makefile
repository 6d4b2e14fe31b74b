# The two commands a newcomer needs: `make run` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
NODE_STAMP := tests/js/node_modules/.installed
PACKAGE_STAMP := clients/js/node_modules/.built
CLIENTS_STAMP := tests/clients/node_modules/.installed
EXAMPLES_STAMP := examples/node_modules/.installed
GRAPHIQL_STAMP := tests/graphiql/node_modules/.installed

.PHONY: install run test schema migrations graphiql chromium client clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# The graphql-ws npm client that tests/test_graphql_ws_client.py runs in Node, as locked.
$(NODE_STAMP): tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund
	touch $@

# The @pulseboard/client npm package (clients/js), type-checked and built into clients/js/dist.
$(PACKAGE_STAMP): clients/js/package.json clients/js/package-lock.json clients/js/tsconfig.json $(wildcard clients/js/src/*.ts)
	npm ci --prefix clients/js --no-audit --no-fund
	npm run --prefix clients/js --silent typecheck
	rm -rf clients/js/dist
	npm run --prefix clients/js --silent build
	touch $@

# Apollo Client and urql, as locked, with @pulseboard/client linked from clients/js (built first:
# it is used from there), for tests/test_clients.py and tests/test_client_package.py.
$(CLIENTS_STAMP): tests/clients/package.json tests/clients/package-lock.json | $(PACKAGE_STAMP)
	npm ci --prefix tests/clients --no-audit --no-fund
	touch $@

# GraphQL Code Generator and TypeScript, as locked, for tests/test_codegen.py.
$(EXAMPLES_STAMP): examples/package.json examples/package-lock.json
	npm ci --prefix examples --no-audit --no-fund
	touch $@

# playwright-core, which drives Debian's chromium in tests/test_graphiql.py.
$(GRAPHIQL_STAMP): tests/graphiql/package.json tests/graphiql/package-lock.json
	npm ci --prefix tests/graphiql --no-audit --no-fund
	touch $@

# Debian's chromium for the GraphiQL browser test (a package, not a browser download).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

client: $(PACKAGE_STAMP)  ## build the @pulseboard/client npm package (clients/js/dist)

run: $(STAMP)  ## serve on http://127.0.0.1:8000/graphql (SQLite + memory://, demo data)
	$(BIN)/python -m pulseboard dev

test: $(STAMP) $(NODE_STAMP) $(PACKAGE_STAMP) $(CLIENTS_STAMP) $(EXAMPLES_STAMP) $(GRAPHIQL_STAMP) chromium  ## the whole suite on SQLite + memory:// (or PULSEBOARD_TEST_* services), lint, types
	$(BIN)/ruff check pulseboard tests
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

schema: $(STAMP)  ## regenerate schema.graphql
	$(BIN)/python -m pulseboard export-schema > schema.graphql

graphiql:  ## rebuild pulseboard/static/graphiql from the pinned npm packages (needs Node 20+)
	scripts/graphiql/build.sh

migrations: $(STAMP)  ## write a migration for model changes
	$(BIN)/tortoise -c pulseboard.settings.TORTOISE_ORM makemigrations

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests/*/node_modules examples/node_modules examples/generated scripts/graphiql/node_modules
	rm -rf clients/js/node_modules clients/js/dist
