# Sandbox IDE: `make run` to serve, `make test` to test. Nothing else is needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
HOST   ?= 127.0.0.1

.PHONY: run setup test test-unit bench lint format typecheck assets image lock clean

# Setting up runs in named stages (ide/stages.py, run by the system python3 since it
# makes the virtualenv): one line each, the tools' output in var/logs/STAGE.log.
# Dependencies come from requirements.lock (exact versions, pip included); the two
# packages of this repository are then installed on top without resolving anything.
STAGES := @$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11 or newer is needed (found $$($(PYTHON) --version))."; exit 1; }; \
	  $(PYTHON) -m ide.stages

$(VENV)/.installed: requirements.lock pyproject.toml sdk/python/pyproject.toml
	$(STAGES) venv

# Refresh requirements.lock after changing dependencies in either pyproject.toml:
# existing pins are kept unless LOCK_ARGS=--upgrade (or --upgrade-package NAME).
lock: $(VENV)/.installed
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile -q --extra dev --strip-extras \
	  --allow-unsafe --no-emit-index-url --no-emit-find-links $(LOCK_ARGS) \
	  -o requirements.lock pyproject.toml sdk/python/pyproject.toml

setup:
	$(STAGES) setup

run:
	$(STAGES) run --host $(HOST) --port $(PORT)

# The browser tests run in their own pytest process: Playwright's sync API keeps an
# event loop running in the main thread, which the asyncio tests cannot share.
test: setup lint
	@status=0; \
	$(PY) -m pytest tests --ignore=tests/e2e || status=1; \
	$(PY) -m pytest tests/e2e || status=1; \
	exit $$status

test-unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

# `make bench` runs every section; `make bench scale` (or any section names after
# `bench`) only those: the words after `bench` are sections, not targets of their own.
ifeq ($(firstword $(MAKECMDGOALS)),bench)
BENCH_SECTIONS := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
ifneq ($(BENCH_SECTIONS),)
$(eval $(BENCH_SECTIONS):;@:)
endif
endif

bench: setup
	$(PY) -m tests.bench $(BENCH_SECTIONS)

# Format, lint, strict types (pyproject.toml's [tool.mypy] names what is checked) and
# the generated sync SDK being up to date; `make test` runs it first.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) sdk/python/unasync.py --check

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

image: $(VENV)/.installed
	$(PY) manage.py build_sandbox_image --force

# Rebuild the committed browser bundles (xterm.js, CodeMirror) from the npm lockfile.
assets:
	cd ide/frontend && npm ci && npm run build

clean:
	rm -rf $(VENV) var
