#!/usr/bin/env bash
# The test command: creates .venv if needed, then runs the whole suite -- library tests,
# every notebook through papermill with the `ci` profile, and the built book in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
# The browser check needs Debian's chromium; install it where we may (CI runs as root).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium for the browser check..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "could not install chromium; the browser test will say so"
fi
export MRTL_PROFILE=ci
exec .venv/bin/python -m pytest -ra "$@"
