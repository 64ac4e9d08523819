# Thin wrapper: the logic lives in scripts/localstack.py (standard library only).
PYTHON ?= python3
VENV_BIN := .venv/bin
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: help setup infra up down restart status demo test test-fast asyncapi snapshots

help:
	@echo "make setup     venv + pip install -e .[test] + bubblewrap (idempotent)"
	@echo "make up        RabbitMQ/Postgres/Redis, secrets in .run/, SeaweedFS, migrations, six services, API key"
	@echo "make down      stop the services and SeaweedFS that make up started"
	@echo "make status    processes and each service's health"
	@echo "make demo      the stack with the demo settings, then the closed loop once (agentloop loop \$$DEMO_ARGS)"
	@echo "make test      the whole test suite (PYTEST_ARGS=... to pass options)"
	@echo "make test-fast everything except slow/e2e tests"
	@echo "make asyncapi  regenerate docs/asyncapi/*.yaml"
	@echo "make snapshots rewrite the contract schema snapshots (after a deliberate change)"

setup:
	$(PYTHON) scripts/localstack.py setup

infra:
	$(PYTHON) scripts/localstack.py infra

up:
	$(PYTHON) scripts/localstack.py up

down:
	$(PYTHON) scripts/localstack.py down

restart: down up

status:
	@$(PYTHON) scripts/localstack.py status

demo:
	$(PYTHON) scripts/localstack.py demo $(DEMO_ARGS)

test:
	$(VENV_BIN)/pytest $(PYTEST_ARGS)

test-fast:
	$(VENV_BIN)/pytest -m "not slow and not e2e" $(PYTEST_ARGS)

asyncapi:
	$(VENV_BIN)/python scripts/asyncapi.py

snapshots:
	UPDATE_SNAPSHOTS=1 $(VENV_BIN)/pytest tests/contracts -q
