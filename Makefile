# The two commands a newcomer runs on a fresh Debian 12 machine, as root: `make demo` and `make test`.
.PHONY: setup demo test lint typecheck unit bench clean

setup:
	sh scripts/setup-host.sh

demo: setup
	.venv/bin/kubeplay demo

lint: setup
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench

typecheck: setup
	.venv/bin/mypy --strict src/kubeplay

unit: setup
	.venv/bin/pytest -q tests/unit

test: setup lint typecheck
	.venv/bin/pytest -q tests

bench: setup
	for b in bench/*.py; do .venv/bin/python $$b || exit 1; done

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache demo-out
