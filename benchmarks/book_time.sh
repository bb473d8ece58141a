#!/usr/bin/env bash
# Time the README's book build for one profile, cold (empty data/model cache, empty execution
# cache) and warm (everything cached, nothing changed), and print per-chapter execution times.
# Usage: benchmarks/book_time.sh [standard|ci|paper]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-standard}
bash scripts/setup-env.sh
scratch=$(mktemp -d)
# Cold means an empty data/model cache: a fresh temporary one unless MRTL_CACHE_DIR names a
# directory to fill (then it must be empty, and it is kept for later runs).
export MRTL_CACHE_DIR="${MRTL_CACHE_DIR:-$scratch/cache}"
if [ -n "$(ls -A "$MRTL_CACHE_DIR" 2>/dev/null)" ]; then
  echo "MRTL_CACHE_DIR=$MRTL_CACHE_DIR is not empty: that would not be a cold build" >&2; exit 2
fi
rm -rf "_build/$profile"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo "torch $(.venv/bin/python -c 'import torch; print(torch.__version__, torch.get_num_threads(), "threads")')"
t0=$(date +%s)
MRTL_PROFILE=$profile ./scripts/build-book.sh > "$scratch/cold.log" 2>&1 || { tail -40 "$scratch/cold.log"; exit 1; }
t1=$(date +%s)
MRTL_PROFILE=$profile ./scripts/build-book.sh > "$scratch/warm.log" 2>&1 || { tail -40 "$scratch/warm.log"; exit 1; }
t2=$(date +%s)
echo "profile $profile: cold build $((t1 - t0)) s, warm build $((t2 - t1)) s"
# per-chapter execution times as jupyter-cache recorded them
.venv/bin/python - "$profile" <<'PY'
import sys
from pathlib import Path
from jupyter_cache import get_cache
cache = get_cache(Path("_build") / sys.argv[1] / "_build" / ".jupyter_cache")
for record in sorted(cache.list_cache_records(), key=lambda r: r.uri):
    secs = record.data.get("execution_seconds")
    if secs is not None:
        print(f"  {Path(record.uri).name:32s} {secs:7.1f} s")
PY
rm -rf "$scratch"
