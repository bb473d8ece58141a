#!/usr/bin/env bash
# Open the chapters in JupyterLab, where every explorer is a live widget, with the project's own
# environment (created first if needed). Extra arguments go to `jupyter lab`, e.g.
#   ./scripts/lab.sh --ip=0.0.0.0 --no-browser     # in a container, reached from the host
# Run as root (a lab container, a JupyterHub image) JupyterLab refuses to start unless told
# --allow-root; this script adds it then, and only then.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
# Kernels pick their torch thread count from the machine's load when they import mrtl_core
# (mrtl_core/threads.py): on a laptop that runs other work, two threads waiting for a busy core are
# several times slower than one. Set MRTL_THREADS=1 (or 2) to fix the count instead.
export MRTL_THREADS="${MRTL_THREADS:-auto}"
extra=()
if [ "$(id -u)" = 0 ]; then
  extra+=(--allow-root)
fi
exec .venv/bin/jupyter lab ${extra[@]+"${extra[@]}"} "$@" notebooks/
