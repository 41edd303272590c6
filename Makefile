# Shortcuts; the README's two commands are the supported entry points.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: serve test lint typecheck bench-storm bench-media image clean

serve:
	bash scripts/serve.sh

test:
	bash scripts/test.sh

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

bench-storm:
	$(PY) bench/signalling_storm.py --json results/signalling_storm.json

bench-media:
	$(PY) bench/media_fanout.py --json results/media_fanout.json

image:
	docker build -t visitroom:latest .

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache results artifacts
