#!/usr/bin/env bash
# Creates the SEPARATE benchmark environment of the FuxiCTR peer (.venv-fuxictr): torch 2.13.0
# first (a CPU wheel on this machine kind; a bare `torch` would pull a multi-GB CUDA build), then
# fuxictr 2.3.10 with polars pinned below 2 (fuxictr breaks with polars 2.x; it pulls ray for its
# data loading), then mimrec itself without dependencies (the benchmark computes every metric
# with mimrec's own metrics code; numpy/pandas/scikit-learn/pyarrow come with fuxictr).
# mimrec's own .venv never sees fuxictr.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BENCH_VENV:-.venv-fuxictr}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip -q --disable-pip-version-check "$@"; }
pip install torch==2.13.0
pip install fuxictr==2.3.10 polars==1.44.2
pip install --no-deps -e .
pip install rich scikit-learn pyarrow
touch "$VENV/.installed"
echo "setup: FuxiCTR benchmark environment ready in $VENV"
