# make demo  - set up .venv if needed, then run the whole pipeline on MovieLens-100K (runs/demo)
# make test  - set up .venv if needed, then run the test suite (slow tests: make test-slow)
# make bench - run every benchmark in benchmarks/ (peers in .venv-fuxictr), write benchmarks/RESULTS.md
# make lint  - ruff
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench bench-env lint setup

$(STAMP): pyproject.toml requirements/no-deps.txt scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mimrec run configs/movielens.toml --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q --durations=25

test-slow: $(STAMP)
	bash scripts/setup-browser.sh
	$(PY) -m pytest -q -m slow

# bench-env: the separate FuxiCTR 2.3.10 environment the peer benchmarks run in (.venv-fuxictr)
BENCH_STAMP := .venv-fuxictr/.installed
$(BENCH_STAMP): scripts/setup_bench_fuxictr.sh
	bash scripts/setup_bench_fuxictr.sh

bench-env: $(BENCH_STAMP)

# bench: every benchmark (benchmarks/run_all.py), results in runs/bench/results and
# benchmarks/RESULTS.md; runs benchmarks/bench_serve.py too when it exists. About 1 hour on 2 cores.
bench: $(STAMP) $(BENCH_STAMP)
	# --no-warn-conflicts: the only conflicts pip would list are the unused declared dependencies
	# of the --no-deps data packages (requirements/no-deps.txt)
	$(PY) -m pip -q install --no-warn-conflicts -e ".[bench]"
	$(PY) benchmarks/run_all.py --run runs/bench

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
