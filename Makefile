# Two commands on a fresh Debian machine: `make run` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: run test lint bootstrap bench-signer bench-e2e bench-ocsp clean

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	@$(PY) scripts/devstack.py run

test: bootstrap lint
	@$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# ruff's lint rules and its formatter: a file that `ruff format` would change fails the run.
lint: bootstrap
	@$(PY) -m ruff check config signer gateway hsm_config db monitoring tests bench scripts
	@$(PY) -m ruff format --check config signer gateway hsm_config db monitoring tests bench scripts

bench-signer: bootstrap
	@$(PY) bench/signer.py $(BENCH_ARGS)

bench-e2e: bootstrap
	@$(PY) bench/e2e.py $(BENCH_ARGS)

bench-ocsp: bootstrap
	@$(PY) bench/ocsp.py --crl $(BENCH_ARGS)

clean:
	rm -rf var test-output
