#!/usr/bin/env bash
# Create (or update) the project's own virtual environment in .venv.
# Installs the CPU build of torch first, so pip never pulls a multi-GB CUDA wheel on a laptop;
# on a GPU machine set MRTL_TORCH="torch" (or a CUDA index) before running this.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.mrtl-installed
# JupyterLab defaults for this environment, kept in jupyter/ (the layout of share/jupyter): e.g. render
# every cell, so that Run All fills in the {eval} numbers of text cells below the screen too.
install_lab_settings() {
  mkdir -p "$VENV/share/jupyter/lab/settings/overrides.d"
  cp jupyter/lab/settings/overrides.d/*.json "$VENV/share/jupyter/lab/settings/overrides.d/"
}
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then
  install_lab_settings
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "${MRTL_TORCH:-torch==2.13.0}"
"$VENV/bin/python" -m pip install --quiet -e ".[book,dev]"
# fastMRI's own code, for the interop tests only: --no-deps keeps Lightning and its pins out; the tests
# import just its torch/NumPy/h5py modules (and evaluate's runstats), and skip if this install fails.
"$VENV/bin/python" -m pip install --quiet --no-deps fastmri==0.3.0 runstats \
  || echo "could not install fastmri; tests/test_fastmri_interop.py will skip and say why" >&2
# One kernel name for papermill and jupyter-book: the environment's own interpreter.
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mrtl)" >/dev/null
install_lab_settings
touch "$STAMP"
