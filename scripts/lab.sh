#!/usr/bin/env bash
# Open the chapters in JupyterLab, where every explorer is a live widget, with the project's own
# environment (created first if needed). Extra arguments go to `jupyter lab`, e.g.
#   ./scripts/lab.sh --ip=0.0.0.0 --no-browser     # in a container, reached from the host
# Run as root (a lab container, a JupyterHub image) JupyterLab refuses to start unless told
# --allow-root; this script adds it then, and only then.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
extra=()
if [ "$(id -u)" = 0 ]; then
  extra+=(--allow-root)
fi
exec .venv/bin/jupyter lab ${extra[@]+"${extra[@]}"} "$@" notebooks/
