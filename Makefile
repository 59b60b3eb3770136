# Two commands for a newcomer: `make demo` and `make test`. Both create or refresh .venv only when
# pyproject.toml changed (the stamp file's name holds its hash), so reruns install nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell sha256sum pyproject.toml | cut -c1-16)
STAMP := $(VENV)/.installed-$(HASH)
DEMO_OUT ?= runs/demo
DEMO_CKPT ?= runs/demo-checkpoints
DEMO_STSP ?= runs/stsp-synthetic

.PHONY: venv demo test lint browser bench serve clean

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/spiritflow checkpoints tiny $(DEMO_CKPT)
	$(BIN)/spiritflow tokenize samples/demo.jsonl --data-root tests/fixtures \
		--checkpoints $(DEMO_CKPT) --variant expressive --out $(DEMO_OUT)
	$(BIN)/spiritflow decode $(DEMO_OUT)/units --checkpoints $(DEMO_CKPT) --out $(DEMO_OUT)
	$(BIN)/spiritflow build-corpus --units $(DEMO_OUT) --text samples/text.jsonl \
		--checkpoints $(DEMO_CKPT) --weights 0,1,1 --text-span 2-4 --speech-span 2-3 --pack --seq-len 256 --out $(DEMO_OUT)
	$(BIN)/spiritflow stsp-synth $(DEMO_STSP)
	$(BIN)/spiritflow stsp --data-root $(DEMO_STSP) --model $(DEMO_CKPT)/spiritlm_model/spirit-lm-expressive-7b \
		--checkpoints $(DEMO_CKPT) --directions all --seeds 3 --max-new-speech 100 --out $(DEMO_OUT)/stsp

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Debian's Chromium renders the HTML reports in tests/test_reports.py (installed when missing and root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: the report rendering tests will be skipped"; fi; }

test: lint browser
	$(BIN)/pytest

bench: venv
	$(BIN)/python benchmarks/ingest_bench.py
	$(BIN)/python benchmarks/units_bench.py
	$(BIN)/python benchmarks/corpus_bench.py
	$(BIN)/python benchmarks/generate_bench.py
	$(BIN)/python benchmarks/scale_bench.py
	$(BIN)/python benchmarks/memory_bench.py

# A Prefect server on 127.0.0.1:4200 (UI), every deployment of prefect.yaml on the spiritflow-process
# pool, and a worker; Ctrl-C stops all three.
serve: venv
	$(BIN)/python -m flows.serve --port 4200

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
