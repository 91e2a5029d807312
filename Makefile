# make demo  - set up .venv if needed, then run the whole pipeline on MovieLens-100K (runs/demo)
# make test  - set up .venv if needed, then run the test suite (slow tests: make test-slow)
# make bench - run the benchmarks in benchmarks/
# make lint  - ruff
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench lint setup

$(STAMP): pyproject.toml requirements/no-deps.txt scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mimrec run configs/movielens.toml --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	bash scripts/setup-browser.sh
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) -m pip -q install -e ".[bench]"
	$(PY) benchmarks/bench_text_encoding.py
	$(PY) benchmarks/bench_sample_builder.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
