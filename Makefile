# The two commands of the README. Each installs what is missing first (deploy/bootstrap.sh).
.PHONY: demo test lint install bench-model bench-ingest bench-validate bench-product bench-assemble osse soak

VENV := .venv/bin

install:
	@bash deploy/bootstrap.sh

# The demo world: 120 days of the synthetic world on the demo domain (about 1 minute, 120 MB).
DEMO_START := 2024-04-01
DEMO_END := 2024-07-29

# Train on the first 90 days; produce the 30 held-out days with the frozen random forest (each day
# is collocated with the stations and the statistics refreshed), then write the report.
TRAIN_END := 2024-06-29
PRODUCE_START := 2024-06-30

demo: install
	@echo "== 1/8 embedded PostGIS" && $(VENV)/smapds db up
	@echo "== 2/8 synthetic world (120 days, demo domain)" && $(VENV)/smapds synth generate --domain demo --start $(DEMO_START) --days 120
	@echo "== 3/8 fetch into the raw archive" && $(VENV)/smapds fetch --date $(DEMO_START) --until $(DEMO_END)
	@echo "== 4/8 in situ stations (ISMN download of the world)" && $(VENV)/smapds ingest ismn var/synthetic/ismn/Data_seperate_files_header_*[0-9]
	@echo "== 5/8 train and freeze the random forest" && $(VENV)/smapds train --start $(DEMO_START) --end $(TRAIN_END) --models rf --freeze rf --activate
	@echo "== 6/8 produce the 30 held-out days (collocate, validate)" && $(VENV)/smapds backfill --start $(PRODUCE_START) --end $(DEMO_END)
	@echo "== 7/8 validation statistics" && $(VENV)/smapds validate
	@echo "== 8/8 report" && $(VENV)/smapds report --start $(PRODUCE_START) --end $(DEMO_END) --out var/report
	@$(VENV)/smapds status
	@echo
	@echo "maps (COG, STAC item, quicklook PNG): var/products/demo/2024/"
	@echo "report:                               var/report/index.html"
	@echo "run the service (scheduler, /metrics, /healthz on 127.0.0.1):  .venv/bin/smapds serve"

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

bench-assemble: install
	$(VENV)/python scripts/bench_assemble.py

bench-validate: install
	$(VENV)/python scripts/bench_validate.py --years 10 --stations 2000

osse: install
	$(VENV)/smapds synth generate --out var/osse/world --domain demo --start 2024-04-01 --days 120
	$(VENV)/python scripts/osse_skill.py --world var/osse/world --train-days 90

# The soak: the service on an accelerated clock over 365 simulated days of the synthetic world with
# seeded random faults (worker kills, crashes, database restarts); about 45 minutes. Prints its
# figures (days made exactly once, RSS over time, open files, database connections).
soak: install
	$(VENV)/python scripts/soak.py
