# Two commands on a fresh Debian machine: `make run` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: run test lint check-bundle bundle bootstrap bench-signer bench-e2e bench-ocsp clean

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	@$(PY) scripts/devstack.py run

test: bootstrap lint check-bundle
	@$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# ruff's lint rules and its formatter: a file that `ruff format` would change fails the run.
lint: bootstrap
	@$(PY) -m ruff check signer gateway hsm_config db monitoring tests bench scripts
	@$(PY) -m ruff format --check signer gateway hsm_config db monitoring tests bench scripts

# The committed browser bundle must be what web/ builds: rebuilt in a temporary folder (npm ci,
# the pinned esbuild), twice, and compared file by file with the committed one. A Makefile step,
# not a unit test: it needs Node and npm, and the unit tests stay Python-only and fast.
check-bundle: bootstrap
	@$(PY) scripts/check_bundle.py

# Rebuild the committed bundle from web/ (after changing web/src, build.mjs or the lock).
bundle:
	@cd web && npm ci --no-audit --no-fund --loglevel=error && node build.mjs

bench-signer: bootstrap
	@$(PY) bench/signer.py $(BENCH_ARGS)

bench-e2e: bootstrap
	@$(PY) bench/e2e.py $(BENCH_ARGS)

bench-ocsp: bootstrap
	@$(PY) bench/ocsp.py --crl $(BENCH_ARGS)

clean:
	rm -rf var test-output
