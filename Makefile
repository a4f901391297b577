# The two commands of the README. Each installs what is missing first (deploy/bootstrap.sh).
.PHONY: demo test lint install bench-model bench-ingest bench-validate bench-product osse

VENV := .venv/bin

install:
	@bash deploy/bootstrap.sh

# The demo world: 120 days of the synthetic world on the demo domain (about 1 minute, 120 MB).
DEMO_START := 2024-04-01
DEMO_END := 2024-07-29

# Train on the first 90 days, produce the last week with the frozen random forest.
TRAIN_END := 2024-06-29
PRODUCE_START := 2024-07-23

demo: install
	$(VENV)/smapds db up
	$(VENV)/smapds synth generate --domain demo --start $(DEMO_START) --days 120
	$(VENV)/smapds fetch --date $(DEMO_START) --until $(DEMO_END)
	$(VENV)/smapds train --start $(DEMO_START) --end $(TRAIN_END) --models rf --freeze rf --activate
	$(VENV)/smapds produce --date $(PRODUCE_START) --until $(DEMO_END)
	$(VENV)/smapds status

lint: install
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

test: lint
	$(VENV)/pytest

# Benchmarks and the OSSE skill check print figures; they are not tests.
bench-model: install
	$(VENV)/python scripts/bench_model.py

bench-ingest: install
	$(VENV)/python scripts/bench_ingest.py --stations 2000 --days 365 --workers 2

bench-product: install
	$(VENV)/python scripts/bench_product.py

bench-validate: install
	$(VENV)/python scripts/bench_validate.py --years 10 --stations 2000

osse: install
	$(VENV)/smapds synth generate --out var/osse/world --domain demo --start 2024-04-01 --days 120
	$(VENV)/python scripts/osse_skill.py --world var/osse/world --train-days 90
