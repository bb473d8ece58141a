"""Do the fine-tuning verdicts hold on more test subjects? The same networks, scored on new subjects.

    python benchmarks/more_test_subjects.py --profile standard --target knee-1.5T --subjects 12
    python benchmarks/more_test_subjects.py --profile standard --target brain-1.5T --acceleration 8 --subjects 12
    python benchmarks/more_test_subjects.py --profile standard --target knee-1.5T --report

Issue 13: "enough test subjects that the verdicts hold (measure; 4 is few)". Every interval of the
book is over the profile's test subjects (4 at ``standard``), and a subject, not a slice, is the unit.
Here the networks behind chapter 8's fine-tuning verdicts are taken from the cache (nothing is
trained): the pre-trained network, the equal-data twin and every run of the target's recipe record
(``benchmarks/finetune_recipes.py``, the record chapter 8 reads: ``grid.preferred_recipe_record``), and
the full-split scratch networks of its ``network-seeds`` record. Each is scored on ``--subjects`` new
subjects of the target, drawn past every split of the experiment (subject indices from
``FIRST_SUBJECT``), with the book's masks and metrics, and the cases chapter 8 judges from those
records (``grid.recipe_claim_cases``) are judged again by the book's rule (``report.claims``), beside
their verdicts on the book's own test subjects.

Prediction, before the first run: with 12 subjects instead of 4 the intervals are about 2.5 times
narrower (sqrt(3) from the count, 3.18 / 2.20 from the t quantile), the means move by less than the
old half-widths, so every case whose old interval cleared the rule's thresholds keeps its verdict;
the knee's fine-tuning - scratch-on-N at N = 10 and 50 (+0.008, under the 0.01 minimum effect) stays
"not clearly better", and the R = 8 cases keep theirs.

Results go to ``benchmarks/results/more-test-subjects-<profile>-<target>-R<acceleration>.json`` (entries
in the recipe record's format, so ``grid.recipe_rows`` reads them) and a ``.txt`` report.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrtl_core import data, experiment as ex, grid, report, simulate  # noqa: E402
from mrtl_core.cache import atomic_write  # noqa: E402
from mrtl_core.evaluate import evaluate  # noqa: E402
from mrtl_core.profiles import get_profile  # noqa: E402
from mrtl_core.stats import Thresholds, fmt_ci, interval_basis  # noqa: E402

from experiment import _record  # noqa: E402  (the grid's entry format: per-slice scores and subjects)
from machine import cpu_model, run_footer  # noqa: E402

#: subject indices far past any split of the experiment (and past clinical_factors.py's 10_000)
FIRST_SUBJECT = 20_000
RESULTS = ROOT / "benchmarks" / "results"


def _name(target: str, acceleration: float) -> str:
    return f"{target}-R{acceleration:g}"


def source_records(profile: str, target: str, acceleration: float, folder: Path = RESULTS) -> tuple[dict, dict | None]:
    """The recipe record chapter 8 reads for this target and its network-seeds record (None if absent)."""
    name = grid.preferred_recipe_record(folder, profile, _name(target, acceleration))
    recipe_file = folder / f"finetune-recipes-{profile}-{name}.json"
    if not recipe_file.is_file():
        raise FileNotFoundError(f"{recipe_file}: no recipe record for {target} at R = {acceleration:g}; "
                                f"run benchmarks/finetune_recipes.py --profile {profile} --target {target} first")
    seeds_file = folder / f"network-seeds-{profile}-{_name(target, acceleration)}.json"
    return json.loads(recipe_file.read_text()), json.loads(seeds_file.read_text()) if seeds_file.is_file() else None


def run_lr(entry: dict, meta: dict, profile_lr: float) -> float | None:
    """The learning rate a recipe record's run was trained at, as ``finetune_run`` takes it (None: the
    profile's, which keeps the run's cache entry): the entry's own, else the record's ``finetune_lr``."""
    lr = entry.get("lr", meta.get("finetune_lr"))
    return None if lr is None or lr == profile_lr else float(lr)


def _networks(profile, recipe_record: dict, seeds_record: dict | None):
    """(key, extra fields, network loader) for every network the claims compare, in the recipe record's
    keys; the full-split scratch networks as ``scratch (full split) | seed=s``."""
    meta = recipe_record["_meta"]
    target, acc = meta["target"], meta["acceleration"]
    source = meta.get("source") or ex.SOURCE_DOMAIN
    validation = meta.get("validation", "target-split")
    yield "pre-trained", {"method": "pre-trained"}, lambda: ex.source_network(profile, source, progress=False)
    yield "twin", {"method": "twin"}, lambda: ex.native_unet(profile, target, acc, progress=False)
    for key, entry in recipe_record.items():
        if key.startswith("_") or "n" not in entry:
            continue
        method, n, seed = entry["method"], int(entry["n"]), int(entry["seed"])
        lr = run_lr(entry, meta, profile.finetune_lr)
        extra = {k: entry[k] for k in ("method", "n", "seed", "steps", "at_cap") if k in entry}
        if method.startswith(grid.SCRATCH_PREFIX):
            yield key, extra, (lambda m=method, n=n, s=seed, lr=entry.get("lr"): ex.finetune_run(
                profile, target, n, s, acceleration=acc, recipe=m[len(grid.SCRATCH_PREFIX):], from_scratch=True,
                lr=lr, progress=False, validation=validation))
        else:
            yield key, extra, (lambda m=method, n=n, s=seed, lr=lr: ex.finetune_run(
                profile, target, n, s, acceleration=acc, recipe=m, progress=False, validation=validation,
                source=source, lr=lr))
    for seed in sorted(int(v["seed"]) for k, v in (seeds_record or {}).items()
                       if not k.startswith("_") and v.get("method") == grid.FULL_SPLIT):
        yield (f"{grid.FULL_SPLIT} | seed={seed}", {"method": grid.FULL_SPLIT, "seed": seed},
               lambda s=seed: ex.scratch_full(profile, target, acc, progress=False, seed=s))


def run(profile_name: str, target: str, acceleration: float, subjects: int, out: Path, folder: Path = RESULTS) -> dict:
    profile = get_profile(profile_name)
    recipe_record, seeds_record = source_records(profile.name, target, acceleration, folder)
    record = json.loads(out.read_text()) if out.is_file() else {}
    if record.get("_meta", {}).get("subjects") not in (None, subjects):
        raise ValueError(f"{out} holds {record['_meta']['subjects']} subjects, not {subjects}: give another --out")
    record["_meta"] = {**recipe_record["_meta"], "subjects": subjects, "first_subject": FIRST_SUBJECT,
                       "torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_model(),
                       "threads": torch.get_num_threads(), "trained": record.get("_meta", {}).get("trained", [])}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mrtl-subjects-") as tmp:
        files = [data.write_subject(Path(tmp) / f"subject{FIRST_SUBJECT + i}.h5",
                                    simulate.simulate_subject(target, FIRST_SUBJECT + i, profile.slices_per_subject,
                                                              profile.image_size, seed=profile.data_seed))
                 for i in range(subjects)]
        dataset = ex.make_dataset(files, acceleration, profile, train=False)
        for key, extra, load in _networks(profile, recipe_record, seeds_record):
            if key in record:
                continue
            model, info = load()
            if not info.get("cached", True):   # the cache should hold every network: say so when it did not
                record["_meta"]["trained"].append(key)
            result = evaluate(model, dataset, batch_size=profile.batch_size, examples=(), name=key)
            record[key] = _record(result, extra)
            atomic_write(out, lambda t: Path(t).write_text(json.dumps(record, indent=1)))
            print(f"{key}: SSIM fg {record[key]['summary']['ssim_fg']['mean']:.4f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    record["_meta"]["seconds"] = time.perf_counter() - started
    atomic_write(out, lambda t: Path(t).write_text(json.dumps(record, indent=1)))
    return record


def case_rows(book: dict, book_seeds: dict | None, more: dict, thresholds: Thresholds = Thresholds()) -> list[dict]:
    """Each case of the two fine-tuning claims that take recipe cases, judged on the book's test subjects
    (``book``, ``book_seeds``) and on the new ones (``more``, whose full-split entries it holds itself):
    ``{"claim", "case", "book": diff, "book_holds", "more": diff, "more_holds"}``."""
    judged = {}
    for label, (rec, seeds) in {"book": (book, book_seeds), "more": (more, more)}.items():
        cases = grid.recipe_claim_cases(rec, seeds, thresholds)
        holds = {(v.key, c["case"]): c["holds"] for v in report.claims({}, thresholds, cases) for c in v.cases}
        judged[label] = {(claim, c["case"]): (c["diff"][thresholds.metric], holds[claim, c["case"]])
                         for claim, claim_cases in cases.items() for c in claim_cases}
    rows = []
    for (claim, case), (diff, ok) in judged["book"].items():
        other = judged["more"].get((claim, case))
        rows.append({"claim": claim, "case": case, "book": diff, "book_holds": ok,
                     "more": other[0] if other else None, "more_holds": other[1] if other else None})
    return rows


def report_text(record: dict, book: dict, book_seeds: dict | None, thresholds: Thresholds = Thresholds()) -> str:
    meta = record["_meta"]
    more_basis = interval_basis(grid.slice_subjects(record["pre-trained"]))
    book_basis = interval_basis(grid.slice_subjects(book["pre-trained"]))
    lines = [f"{meta['target']} at R = {meta['acceleration']:g}, profile {meta['profile']['name']}: the networks of "
             f"chapter 8's fine-tuning verdicts on the book's test split ({book_basis}) and on new subjects "
             f"({more_basis}); {thresholds.label}, difference [95 % CI], ✓ where the case satisfies its claim",
             "", "| claim | case | book's test subjects | new subjects |", "|---|---|---|---|"]
    mark = {True: "✓", False: "✗", None: "–"}
    for r in case_rows(book, book_seeds, record, thresholds):
        more = f"{fmt_ci(r['more'])} {mark[r['more_holds']]}" if r["more"] else "–"
        lines.append(f"| {r['claim']} | {r['case']} | {fmt_ci(r['book'])} {mark[r['book_holds']]} | {more} |")
    lines += ["", "Share of the gap to the equal-data twin closed (mean over seeds), book's test subjects -> new ones:", ""]
    old = {(r["recipe"], r["N"]): r for r in grid.recipe_rows(book, thresholds.metric)}
    for r in grid.recipe_rows(record, thresholds.metric):
        o = old.get((r["recipe"], r["N"]))
        lines.append(f"* {r['recipe']}, N = {r['N']}: {100 * o['share_closed']:.0f} % -> {100 * r['share_closed']:.0f} %"
                     if o else f"* {r['recipe']}, N = {r['N']}: {100 * r['share_closed']:.0f} %")
    if meta.get("trained"):
        lines += ["", f"Trained because the cache lacked them: {', '.join(meta['trained'])}"]
    lines += ["", run_footer(meta)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--target", default="knee-1.5T")
    parser.add_argument("--acceleration", type=float, default=4.0)
    parser.add_argument("--subjects", type=int, default=12, help="new test subjects")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="the folder of the recipe and network-seeds records (default benchmarks/results)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--report", action="store_true", help="only print the report of an existing JSON")
    args = parser.parse_args(argv)
    if args.subjects < 2:
        parser.error(f"--subjects must be >= 2 (an interval over subjects needs two), got {args.subjects}")
    out = args.out or args.results / f"more-test-subjects-{args.profile}-{_name(args.target, args.acceleration)}.json"
    if args.report and not out.is_file():
        raise FileNotFoundError(f"{out}: no record to report; run without --report first")
    record = json.loads(out.read_text()) if args.report else run(args.profile, args.target, args.acceleration,
                                                                  args.subjects, out, args.results)
    book, book_seeds = source_records(args.profile, args.target, args.acceleration, args.results)
    text = report_text(record, book, book_seeds)
    print()
    print(text)
    if not args.report:
        atomic_write(out.with_suffix(".txt"), lambda t: Path(t).write_text(text + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
