"""How far the book's ci-profile numbers move between CPU kernels and thread counts.

Floating-point kernels differ between CPUs (an Intel Xeon with AVX512 and AMX, an AMD EPYC with
AVX2, ...), and so do the sums a 1-thread and a 2-thread run form. A finding asserted on the ci
profile must hold on every one of them. This script runs every chapter through papermill, profile
``ci``, once per *configuration*: a kernel family the CPU can emulate (ATen's vector kernels via
``ATEN_CPU_CAPABILITY``, oneDNN's convolutions via ``ONEDNN_MAX_CPU_ISA``, MKL's FFT and BLAS via
``MKL_ENABLE_INSTRUCTIONS``) times a thread count. Each configuration gets its own empty cache, so
the data and the pre-trained network are rebuilt under it. Then it

* checks the findings tests on each configuration's records (``MRTL_CHECK_RECORDS``, see
  ``tests/conftest.py``) and tabulates pass/fail per test and configuration, and
* measures, for every number a chapter recorded, the range (max - min) over configurations, and
  the largest range per metric family (SSIM, PSNR, ...), which ``tests/findings.py`` reads as the
  margin a ci-profile comparison must clear.

    python benchmarks/kernel_spread.py                        # every kernel family x {1, 2} threads
    python benchmarks/kernel_spread.py --kernels native default --threads 2
    python benchmarks/kernel_spread.py --certify RECORDS   # after editing a findings test: worst case only

About 3 minutes of notebooks per configuration on 2 idle cores (six configurations: ~20 min).
Writes ``benchmarks/results/kernel_spread-ci.json`` and ``.txt``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from kernels import KERNELS, pinned_environ  # noqa: E402
from machine import cpu_model  # noqa: E402

FINDINGS_TESTS = ["tests/test_findings_learning.py", "tests/test_findings_finetune.py",
                  "tests/test_findings_physics.py", "tests/test_findings_results.py",
                  "tests/test_notebooks.py::test_chapter1_numbers"]
FAMILIES = ("ssim", "psnr", "rmse", "nmse")   # checked in this order: "ssim_fg" is SSIM
OUT = ROOT / "benchmarks" / "results" / "kernel_spread-ci"


def family(path: str) -> str | None:
    """The metric family a recorded number belongs to, from its key path (None: no metric)."""
    leaf_keys = path.lower().split("/")
    for name in FAMILIES:
        if any(re.search(rf"(^|_){name}($|_)", key) for key in leaf_keys):
            return name
    return None


def flatten(value, prefix: str = "") -> dict[str, float]:
    """Every finite numeric leaf of a record, keyed by its path (``a/b/0``)."""
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}/{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}/{i}"))
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return {prefix: float(value)}
    return {}


def run_chapters(name: str, kernel: str, threads: int, workdir: Path) -> tuple[Path, dict]:
    """Execute every chapter under one configuration; return its records folder and timings."""
    records, cache, executed = workdir / "records", workdir / "cache", workdir / "executed"
    for folder in (records, cache, executed):
        folder.mkdir(parents=True, exist_ok=True)
    env = dict(pinned_environ(dict(os.environ), kernel, threads), MRTL_PROFILE="ci", MRTL_RECORDS_DIR=str(records),
               MRTL_CACHE_DIR=str(cache), TQDM_DISABLE="1", PYTHONPATH=str(ROOT))
    papermill = Path(sys.executable).parent / "papermill"
    seconds, errors = {}, {}
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        start = time.perf_counter()
        proc = subprocess.run([str(papermill), str(nb), str(executed / nb.name), "-p", "profile", "ci",
                               "-k", "python3", "--cwd", str(ROOT / "notebooks"), "--no-progress-bar"],
                              env=env, capture_output=True, text=True)
        seconds[nb.stem] = round(time.perf_counter() - start, 1)
        if proc.returncode != 0:
            errors[nb.stem] = proc.stderr.strip().splitlines()[-1:] or ["(no message)"]
        print(f"  {name}: {nb.stem} {seconds[nb.stem]:.0f} s{' FAILED' if proc.returncode else ''}", flush=True)
    return records, {"seconds": seconds, "errors": errors}


def check_findings(records: Path, workdir: Path, worst_case: bool = False) -> dict[str, str]:
    """``{test id: "passed" | "failed" | "skipped"}`` of the findings tests on these records. With
    ``worst_case`` every ``findings.clears`` comparison takes, from the spread record just written,
    the lowest measured value of the better side and the highest of the worse: it certifies that
    the assertion holds with its margin on every kernel measured, not only on these records."""
    junit = workdir / f"findings{'-worst' if worst_case else ''}.xml"
    env = dict(os.environ, MRTL_CHECK_RECORDS=str(records), MRTL_PROFILE="ci", PYTHONPATH=str(ROOT))
    if worst_case:
        env["MRTL_FINDINGS_WORST_CASE"] = "1"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                    *FINDINGS_TESTS], cwd=ROOT, env=env, capture_output=True, text=True)
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname').split('.')[-1]}::{case.get('name')}"
        tags = {child.tag for child in case}
        outcomes[test_id] = ("failed" if tags & {"failure", "error"} else
                             "skipped" if "skipped" in tags else "passed")
    return outcomes


def spread(per_config: dict[str, dict[str, dict]]) -> dict[str, dict[str, list[float]]]:
    """``{chapter: {path: [min, max]}}`` over configurations, for numbers every one recorded."""
    chapters = set.intersection(*(set(r) for r in per_config.values()))
    out = {}
    for chapter in sorted(chapters):
        flat = [flatten(r[chapter]["numbers"]) for r in per_config.values()]
        paths = set.intersection(*(set(f) for f in flat))
        out[chapter] = {p: [min(f[p] for f in flat), max(f[p] for f in flat)] for p in sorted(paths)}
    return out


def family_ranges(ranges: dict[str, dict[str, list[float]]]) -> dict[str, dict]:
    """Largest range per metric family, and where it occurred."""
    best: dict[str, dict] = {}
    for chapter, paths in ranges.items():
        for path, (low, high) in paths.items():
            fam = family(path)
            if fam and high - low > best.get(fam, {"range": -1.0})["range"]:
                best[fam] = {"range": high - low, "where": f"{chapter}: {path}"}
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=list(KERNELS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--out", type=Path, default=OUT, help="output path without suffix")
    parser.add_argument("--certify", type=Path, metavar="RECORDS",
                        help="measure nothing: re-run only the worst-case check of the findings tests against the "
                             "recorded spread, with the ci records in RECORDS for their structure (after a test changed)")
    args = parser.parse_args()
    if args.certify:
        result = json.loads(OUT.with_suffix(".json").read_text())
        with tempfile.TemporaryDirectory(prefix="kernel-spread-") as tmp:
            worst = check_findings(args.certify, Path(tmp), worst_case=True)
        for test in result["outcomes"]:
            result["outcomes"][test].pop("worst-case", None)
        for test, outcome in worst.items():
            result["outcomes"].setdefault(test, {})["worst-case"] = outcome
        print("\n".join(write(OUT, result)))
        return 0
    import torch

    configs = {f"{k}-{t}t": (k, t) for k in args.kernels for t in args.threads}
    print(f"{cpu_model()}; torch {torch.__version__}, best ATen kernel {torch.backends.cpu.get_cpu_capability()}; "
          f"configurations: {', '.join(configs)}", flush=True)
    per_config, outcomes, runs = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="kernel-spread-") as tmp:
        for name, (kernel, threads) in configs.items():
            workdir = Path(tmp) / name
            records, runs[name] = run_chapters(name, kernel, threads, workdir)
            per_config[name] = {p.stem: json.loads(p.read_text()) for p in sorted(records.glob("*.json"))}
            outcomes[name] = check_findings(records, workdir)
            failed = [t for t, o in outcomes[name].items() if o == "failed"]
            print(f"{name}: {len(failed)} findings test(s) failed {failed}", flush=True)
        ranges = spread(per_config)
        families = family_ranges(ranges)
        tests = sorted(set().union(*(set(o) for o in outcomes.values())))
        result = {
            "cpu": cpu_model(), "torch": torch.__version__,
            "configs": {n: {"kernel": k, "threads": t, "env": KERNELS[k]} for n, (k, t) in configs.items()},
            "runs": runs, "outcomes": {t: {n: outcomes[n].get(t, "absent") for n in configs} for t in tests},
            "family_max_range": families, "ranges": ranges,
        }
        write(args.out, result)
        if args.out == OUT:  # the findings tests read the default record
            first = next(iter(configs))
            worst = check_findings(Path(tmp) / first / "records", Path(tmp) / first, worst_case=True)
            for test, outcome in worst.items():
                result["outcomes"].setdefault(test, {})["worst-case"] = outcome
    lines = write(args.out, result)
    print("\n".join(lines))
    return 0


def write(out: Path, result: dict) -> list[str]:
    """Write the record (``.json``) and its summary (``.txt``); return the summary's lines."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, sort_keys=True))
    families, runs = result["family_max_range"], result["runs"]
    lines = [f"# kernel spread, profile ci: {result['cpu']}, torch {result['torch']}", "",
             "largest range over configurations, per metric family:"]
    lines += [f"  {fam:<5} {info['range']:.4f}  ({info['where']})" for fam, info in sorted(families.items())]
    lines += ["", "findings tests that failed somewhere ('worst-case': every comparison at its worst measured kernel):"]
    unstable = {t: o for t, o in result["outcomes"].items() if set(o.values()) & {"failed", "absent"}}
    lines += [f"  {t}: " + ", ".join(f"{n} {o}" for n, o in o.items()) for t, o in unstable.items()] or ["  (none)"]
    worst = [o["worst-case"] for o in result["outcomes"].values() if "worst-case" in o]
    if worst:
        lines += ["", f"worst-case check of the current findings tests: {worst.count('passed')} passed, "
                      f"{worst.count('failed')} failed, {worst.count('skipped')} skipped"]
    lines += ["", "wall time of the chapters per configuration (s): " +
              ", ".join(f"{n} {sum(r['seconds'].values()):.0f}" for n, r in runs.items())]
    out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    sys.exit(main())
