# ChatLima: `make run` serves the app, `make test` runs the whole suite.
# Both create the virtualenv and install what they need on a fresh machine.

VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1
# Test processes (pytest-xdist; each test file stays in one process, with its own test database).
TEST_WORKERS ?= 2

.PHONY: install run test e2e-deps migrations-check lint bench-estimator clean

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py create_demo_user
	$(PY) manage.py settle_interrupted --wait &
	@if [ -n "$$REDIS_URL" ]; then \
		echo "REDIS_URL is set: starting a Celery worker with beat"; \
		$(VENV)/bin/celery -A chatlima worker --beat --loglevel=info --concurrency=2 & \
	fi; \
	echo "ChatLima on http://$(HOST):$(PORT)/"; \
	$(PY) -m chatlima.serve --workers $(WORKERS) -b $(HOST) -p $(PORT)

# Chromium for the browser tests comes from Debian, never a browser download.
e2e-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = "0" ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium is missing: sudo apt-get install -y chromium (browser tests will be skipped)"; fi; }

test: install e2e-deps
	$(PY) manage.py makemigrations --check --dry-run >/dev/null
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

migrations-check: install
	$(PY) manage.py makemigrations --check --dry-run

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache screenshots
