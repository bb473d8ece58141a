#!/usr/bin/env bash
# Build the executable book: create .venv if needed, execute every chapter with the chosen profile
# (MRTL_PROFILE=ci|standard|paper, default standard) and write the HTML.
#
# Each profile builds into its own folder _build/<profile>/ with its own jupyter-cache: the cache
# hashes only code cells, not MRTL_PROFILE, so sharing it would show one profile's outputs under
# another. Within a profile a second build re-executes only chapters whose code changed.
#
# A failing cell fails the build (-W turns myst-nb's execution error into an error; --keep-going
# reports every failing chapter, not just the first). Extra arguments go to `jupyter-book build`,
# e.g. --all to rebuild every page.
#
# Launch buttons: set MRTL_REPOSITORY_URL (e.g. https://github.com/you/mrtl) to get the repository,
# Binder and (GitHub only) Colab buttons; without it the book has none. The build reads a config
# derived from _config.yml by scripts/book_config.py, written to _build/<profile>/_config.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
export MRTL_PROFILE="${MRTL_PROFILE:-standard}"
# Progress bars are for people watching a kernel; in the static book they would only show a
# frozen bar, so the build turns them off (JupyterLab and papermill runs keep them).
export TQDM_DISABLE="${TQDM_DISABLE:-1}"
case "$MRTL_PROFILE" in
  ci|standard|paper) ;;
  *) echo "MRTL_PROFILE must be ci, standard or paper, got '$MRTL_PROFILE'" >&2; exit 2 ;;
esac
out="_build/$MRTL_PROFILE"
echo "building the book with profile '$MRTL_PROFILE' into $out/ ..."
.venv/bin/python scripts/book_config.py "$out/_config.yml"
start=$(date +%s)
status=0
.venv/bin/jupyter-book build . --config "$out/_config.yml" --path-output "$out" -W -n --keep-going "$@" || status=$?
elapsed=$(( $(date +%s) - start ))
if [ "$status" -ne 0 ]; then
  echo "book build FAILED (exit $status) after ${elapsed} s; failing notebooks' logs are under $out/_build/html/reports/" >&2
  exit "$status"
fi
echo "book built in ${elapsed} s (profile $MRTL_PROFILE): $out/_build/html/index.html"
