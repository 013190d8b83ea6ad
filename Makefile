# Inkling: `make run` sets up everything and starts the product; `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTANCE ?= instance
PORT ?= 5000
HOST ?= 127.0.0.1
export INKLING_INSTANCE_PATH := $(abspath $(INSTANCE))

.PHONY: run setup test install data models bench bench-accuracy bench-writers bench-latency bench-http bench-continual bench-export bench-import bench-load bench-hotswap bench-prune bench-label-sets bench-strokes translations clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

data: install
	$(BIN)/python -m training.mnist

models: data
	$(BIN)/python -m training.train --if-missing

# The database schema, then the base models registered as version 1 (both idempotent).
setup: models
	$(BIN)/flask --app webapp db upgrade
	$(BIN)/flask --app webapp models import-base

# The web server and a Celery worker, with embedded defaults (SQLite, local storage and a
# SQLite broker) unless DATABASE_URL, S3_BUCKET or REDIS_URL say otherwise; the worker's beat (-B)
# prunes expired predictions hourly. Ctrl-C stops both.
run: setup
	@$(BIN)/celery -A workers.celery_app worker -B --loglevel=INFO --pool=solo & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	echo "Inkling on http://$(HOST):$(PORT)/"; \
	$(BIN)/gunicorn --config gunicorn.conf.py --bind $(HOST):$(PORT) "webapp:create_app()"

test: install
	$(BIN)/python -m pytest

bench: bench-accuracy bench-latency bench-http bench-continual

# MODELS=<folder> measures another models folder (a candidate's) instead of instance/models.
bench-accuracy: models
	$(BIN)/python -m bench.accuracy $(if $(MODELS),--models $(MODELS))

# The writers benchmark alone: per writer and network (needs the font packages .ci/run installs).
bench-writers: models
	$(BIN)/python -m bench.writers $(if $(MODELS),--models $(MODELS))

bench-latency: models
	$(BIN)/python -m bench.latency

bench-http: models
	$(BIN)/python -m bench.serving

bench-continual: models
	$(BIN)/python -m bench.continual

# Cold start of a new label set (six procedural doodle classes, both networks from scratch),
# through the HTTP API; OFFLINE=1 measures the library alone, three seeds (no base models needed).
bench-label-sets: $(if $(OFFLINE),install,models)
	$(BIN)/python -m bench.label_sets $(if $(OFFLINE),--offline)

# Needs MNIST only (its digits are the drawings); `--database-url` runs it on PostgreSQL.
bench-export: data
	$(BIN)/python -m bench.export

bench-import: install
	$(BIN)/python -m bench.importing

# 100,000 expired predictions pruned on PostgreSQL + moto S3 while gunicorn answers (COUNT= for fewer).
bench-prune: install
	$(BIN)/python -m bench.prune $(if $(COUNT),--count $(COUNT))

# Server time of a contribution with and without a typical drawing's strokes (10 strokes, 300 points).
bench-strokes: models
	$(BIN)/python -m bench.strokes

# Predictions at concurrency 1, 8 and 32 (wrk), contributions on PostgreSQL + moto S3, and a
# 10-minute soak at half the peak rate; needs wrk (apt-get install wrk) and PostgreSQL.
bench-load: models
	$(BIN)/python -m bench.load

# 200 predictions/s while versions are activated, rolled back, and a corrupt one refused.
bench-hotswap: models
	$(BIN)/python -m bench.hotswap

# The interface's messages from webapp/ into messages.pot, merged into the ja, zh and ru catalogs; new or
# changed entries then need translating in webapp/translations/<lang>/LC_MESSAGES/messages.po.
translations: install
	$(BIN)/pybabel extract -F babel.cfg -k _l --project=Inkling --copyright-holder=Inkling \
		-o webapp/translations/messages.pot .
	for lang in ja zh ru; do \
		$(BIN)/pybabel update -i webapp/translations/messages.pot -d webapp/translations -l $$lang --ignore-obsolete; \
	done

clean:
	rm -rf $(VENV) .pytest_cache

# The Procfile's processes on loopback, configured as on Heroku (PostgreSQL, Redis db 14, moto
# S3), driven over HTTP through a retrain and a rollback; then SIGTERM and a check that nothing
# was lost. Needs PostgreSQL and Redis running (.ci/run starts them).
.PHONY: prod-smoke slug-size
prod-smoke: data
	$(BIN)/python tests/smoke/prod_smoke.py

# requirements.txt in a fresh virtualenv, after bin/post_compile, compressed (Heroku's slug limit).
slug-size: install
	$(BIN)/python -m bench.slug_size --post-compile
