#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver from Debian (as root) for the slow browser test of
# the service page (tests/serve/test_page.py). `make test-slow` calls this; `make test` does not.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: apt-get install chromium chromium-driver"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
else
  echo "setup: warning: please install the Debian packages chromium and chromium-driver" >&2
fi
