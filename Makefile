# Two commands on a fresh Debian machine: `make run` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: run test lint check-bundle bundle lock bootstrap bench-signer bench-e2e bench-ocsp clean

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	@$(PY) scripts/devstack.py run

test: bootstrap lint check-bundle
	@$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# ruff's lint rules and its formatter: a file that `ruff format` would change fails the run.
lint: bootstrap
	@$(PY) -m ruff check config signer gateway hsm_config db admin monitoring tests bench scripts
	@$(PY) -m ruff format --check config signer gateway hsm_config db admin monitoring tests bench scripts

# The committed browser bundle must be what web/ builds: rebuilt in a temporary folder (npm ci,
# the pinned esbuild), twice, and compared file by file with the committed one. A Makefile step,
# not a unit test: it needs Node and npm, and the unit tests stay Python-only and fast.
check-bundle: bootstrap
	@$(PY) scripts/check_bundle.py

# Rebuild the committed bundle from web/ (after changing web/src, build.mjs or the lock).
bundle:
	@cd web && npm ci --no-audit --no-fund --loglevel=error && node build.mjs

# The Python lock files bootstrap installs from (pip --require-hashes): requirements/test.txt
# (dependencies + the test extra, for .venv) and requirements/runtime.txt (dependencies, for the
# runtime venv, held to the versions of test.txt), for Python 3.11 on any platform. Written by uv,
# needed only here (in var/lock-tool). Keeps the locked versions that still fit pyproject.toml;
# `make lock UPGRADE=1` takes the newest that fit.
UV_VERSION := 0.13.9
UV := var/lock-tool/bin/uv
LOCK_ARGS := -q --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock"
lock:
	@[[ -x $(UV) ]] || { python3 -m venv var/lock-tool && var/lock-tool/bin/pip install -q uv==$(UV_VERSION); }
	@$(UV) pip compile $(LOCK_ARGS) $(if $(UPGRADE),--upgrade) pyproject.toml requirements/build.in \
	  --extra test -o requirements/test.txt
	@$(UV) pip compile $(LOCK_ARGS) $(if $(UPGRADE),--upgrade) pyproject.toml requirements/build.in \
	  -c requirements/test.txt -o requirements/runtime.txt

bench-signer: bootstrap
	@$(PY) bench/signer.py $(BENCH_ARGS)

bench-e2e: bootstrap
	@$(PY) bench/e2e.py $(BENCH_ARGS)

bench-ocsp: bootstrap
	@$(PY) bench/ocsp.py --crl $(BENCH_ARGS)

clean:
	rm -rf var test-output
