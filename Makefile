# Two commands do everything on a fresh machine:  make dev  (local stack)  and  make test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8080
# pytest workers of `make test` (pytest-xdist; each test file runs whole in one worker). The
# browser and emulator tests mostly wait, so two workers on two cores cut the wall time (docs/local-stack.md).
TEST_WORKERS ?= 2
# The browser tests' headless Chromium (tests/browser/conftest.py reads CHROMIUM_PATH).
export CHROMIUM_PATH ?= /usr/bin/chromium

.PHONY: dev test lint bench bench-publish bench-burst bench-migrate bench-status bench-live bench-load deploy deploy-rehearsal rules-test install clean chromium

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# The wheels of requirements.txt: the deploy rehearsal installs each uploaded source from them,
# offline, as Cloud Build installs it from the pinned file alone.
.wheels/.downloaded: requirements.txt $(VENV)/.installed
	$(PY) -m pip download --quiet --disable-pip-version-check -r requirements.txt -d .wheels
	touch $@

install: $(VENV)/.installed node_modules/.installed .wheels/.downloaded

## The local stack: emulators, every function, the emulator's event delivery, the sample data.
dev: install
	PORT=$(PORT) $(PY) -m dev.stack

## Chromium for the browser tests: Debian's package, installed with apt-get when it is missing
## and we run as root; otherwise a message that says what to do.
chromium:
	@if [ ! -x "$(CHROMIUM_PATH)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium (missing at $(CHROMIUM_PATH))"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	  else \
	    echo "make test needs Chromium at $(CHROMIUM_PATH): install Debian's chromium (as root:" \
	         "apt-get install chromium) or set CHROMIUM_PATH=/path/to/chromium" >&2; exit 1; \
	  fi; \
	fi

## The whole test suite on Google's Firestore emulator (started and stopped by the tests),
## the rules tests under its rules engine included. A green run leaves nothing behind; a failed
## one keeps its logs and pictures in test-artifacts/.
test: install chromium
	node --test web/tests/*.test.js
	$(PY) -m rules.run
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(VENV)/bin/ruff check .

## Read-path benchmark (issue figures: medians, p95, ratios, document reads).
bench: install
	$(PY) bench/read_bench.py

## Firestore rules tests under Google's Firestore emulator (the storage ones say NOT RUN: Google's
## Storage emulator cannot be downloaded here).
rules-test: install
	$(PY) -m rules.run

## Deploy to Google Cloud (gcloud and firebase logged in; docs/deploy.md):
##   make deploy PROJECT=my-project REGION=europe-west1 [FIRESTORE_LOCATION=eur3] [DRY_RUN=1]
## The deploy imports the code (entry points, settings): it runs with the project's venv, and
## the firebase CLI pinned in package.json.
deploy: install
	PATH="$(CURDIR)/node_modules/.bin:$$PATH" $(PY) -m deploy.deploy

## The real `make deploy` through the real gcloud and firebase CLIs against a recording fake of
## Google's APIs on 127.0.0.1, and the uploaded zips run on the emulators (docs/deploy.md).
deploy-rehearsal: install
	$(PY) -m pytest tests/test_deploy_rehearsal.py -p no:cacheprovider

## Snapshot publisher benchmark at scale, one column per size: make bench-publish DOCS=1k,10k,100k
## (bytes per change, ack latency, peak RSS, streamed rebuild, the fallback in an outage).
DOCS ?= 1000,10000
bench-publish: install
	$(PY) bench/publish_bench.py --docs $(DOCS)

## Burst benchmark of the local stack's change events: 2,000 writes through Firestore, the
## emulator's own deliveries, the time until the snapshot holds them all (a request per event, 16
## at a time as before, 240 as deployed, 2,000; batches to the publisher, the default), beside
## the emulator's own delivery pace.
bench-burst: install
	$(PY) bench/burst_bench.py

## Live-mode benchmark in headless Chromium on the local stack: propagation p50/p95 (live vs
## polling every 5 s vs an SSE stream from a function), reads per change, a quiet minute's cost.
bench-live: install
	$(PY) bench/live_bench.py

## Page-load benchmark in headless Chromium on the local stack (driven over its DevTools pipe):
## navigation to the first data event and to the rows (in a frame, on screen), first visit,
## repeat visit (before the worker and the saved copy; new tab; reload), offline reload.
bench-load: install
	$(PY) bench/load_bench.py

## Migration benchmark: throughput vs a naive loop through a 10 ms proxy, dry-run memory 5 vs 50 MB.
bench-migrate: install
	$(PY) bench/migrate_bench.py

## Status page benchmark: GET /migrate/status vs the CLI doctor's checks, reads per call, Firestore down.
bench-status: install
	$(PY) bench/status_bench.py

clean:
	rm -rf $(VENV) node_modules .wheels .pytest_cache .ruff_cache .dev
