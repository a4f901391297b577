# The two commands of the README. Each installs what is missing first (deploy/bootstrap.sh).
.PHONY: demo test lint install

VENV := .venv/bin

install:
	@bash deploy/bootstrap.sh

demo: install
	$(VENV)/smapds db up
	$(VENV)/smapds status

lint: install
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

test: lint
	$(VENV)/pytest
