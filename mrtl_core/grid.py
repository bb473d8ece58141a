"""The experiment grid's record: its one schema, and the tables made from it.

``benchmarks/experiment.py`` appends one entry per finished evaluation to a JSON file. An entry is
identified by its fields, ``target``, ``method`` and, for runs on N target slices, ``n`` and
``seed`` (and ``budget``, the step budget of a run without early stopping); it holds
``"summary": {metric: {"mean", "ci_low", "ci_high", ...}}`` and ``"per_slice": {metric: [...]}``.
Methods: ``zero-filled``, ``cg-sense`` (coil maps from the acquired ACS lines, as a scanner computes
them), ``cg-sense-true-maps`` (the simulator's true maps: an oracle), ``pretrained``, ``scratch-full``, ``native`` (the
pre-trained network's equal-data twin on the target), ``fine-tuned``, ``scratch``, ``forgetting``
(a fine-tuned model back on the source) and ``fine-tuned-no-early-stopping``. The JSON key of an
entry is :func:`entry_key` of those fields, written in one place; every reader here selects entries
by their fields (:func:`entry`, :func:`seed_runs`), never by taking a key apart. ``"_meta"`` holds
the profile and the machine.

The functions here turn that file into the tables the benchmark prints and the results chapter
shows; none of them trains or evaluates anything, and none knows where the file lives: callers pass
its path.

Two kinds of interval: a paired one on the test slices (two methods on the same slices and masks),
over the test *subjects* (the mean difference of each subject's slices; the slices of one subject
are not independent) or, beside it, over slices; and, for runs repeated over seeds, the t-interval
of the mean over seeds.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .stats import (Thresholds, change_phrase, classify, compare_sentence, difference, equivalent, fmt_ci,
                    fmt_interval, gap_to_recover, interval_basis, interval_over, subject_means, summarise)

__all__ = ["entry_key", "load_grid", "entry", "seed_runs", "seeds", "ns", "targets", "seed_summary", "slice_subjects",
           "paired", "test_set", "gap_table",
           "curve_table", "forgetting_table", "overfit_table", "seed_averaged_difference", "markdown_table",
           "markdown_report", "gap_sentences", "curves_figure",
           "load_field_shift", "field_shift_table", "recipe_title", "preferred_recipe_record", "RECIPE_RECORD_VARIANTS",
           "scratch_share", "recipe_curves_figure",
           "recipe_claim_cases", "SCRATCH_PREFIX",
           "load_clinical_factors", "factor_rows", "factor_table",
           "factor_sentence", "recipe_rows", "recipe_table", "recipe_sentence",
           "seed_comparison", "seed_sentence"]

METRICS = ("ssim", "ssim_fg", "psnr", "psnr_fg")
_FIELDS = ("target", "method", "n", "seed", "budget")   # what identifies an entry


def entry_key(target: str, method: str, n: int | None = None, seed: int | None = None,
              budget: int | None = None) -> str:
    """The JSON key of the entry with these fields: ``"knee-1.5T R4 | fine-tuned N=5 seed=0"``. The
    entry carries the same fields, and readers select by them, so the key is never parsed."""
    key = f"{target} | {method}"
    if n is not None:
        key += f" N={n}"
    if budget is not None:
        key += f" steps={budget}"
    return key + (f" seed={seed}" if seed is not None else "")


def load_grid(path: str | Path) -> dict:
    """The grid JSON at ``path`` (e.g. ``benchmarks/results/experiment-standard.json``).

    Raises ``FileNotFoundError`` naming the file and the command that writes it, and ``ValueError``
    naming an entry that lacks what the tables read or whose key disagrees with its fields.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no grid results; write them with `python benchmarks/experiment.py --out {path}`")
    results = json.loads(path.read_text())
    for key, item in _entries(results).items():
        for field in ("target", "method", "summary", "per_slice"):
            if field not in item:
                raise ValueError(f"{path}: entry {key!r} has no {field!r}")
        fields = _fields(item)
        if key != entry_key(**fields):
            raise ValueError(f"{path}: entry {key!r} has the fields {fields}, whose key is {entry_key(**fields)!r}")
    return results


def _fields(item: dict) -> dict:
    fields = {f: item.get(f) for f in _FIELDS}
    if fields["budget"] is None and item.get("method") == "fine-tuned-no-early-stopping":
        fields["budget"] = item.get("steps")   # records written before the field existed: no early stop, steps = budget
    return fields


def entry(results: dict, target: str, method: str, n: int | None = None, seed: int | None = None,
          budget: int | None = None) -> dict | None:
    """The entry with exactly these fields, or None."""
    want = {"target": target, "method": method, "n": n, "seed": seed, "budget": budget}
    for item in _entries(results).values():
        if _fields(item) == want:
            return item
    return None


def seed_runs(results: dict, target: str, method: str, n: int) -> list[dict]:
    """The entries of ``method`` on ``n`` slices of ``target``, one per recorded seed."""
    return [e for e in (entry(results, target, method, n, s) for s in seeds(results)) if e is not None]


def _entries(results: dict) -> dict[str, dict]:
    return {k: v for k, v in results.items() if not k.startswith("_")}


def seeds(results: dict) -> list[int]:
    return sorted({v["seed"] for v in _entries(results).values() if "seed" in v})


def ns(results: dict, target: str | None = None) -> list[int]:
    return sorted({v["n"] for v in _entries(results).values() if "n" in v and (target is None or v["target"] == target)})


def targets(results: dict) -> list[str]:
    return list(dict.fromkeys(v["target"] for v in _entries(results).values()))


def seed_summary(runs: Sequence[dict], metric: str = "ssim_fg", confidence: float = 0.95) -> dict | None:
    """Mean over ``runs`` (entries, one per seed) of their test-set means, with the t-interval
    (:func:`mrtl_core.stats.summarise`; NaN bounds for a single run); None for no runs."""
    values = [r["summary"][metric]["mean"] for r in runs]
    return summarise(np.array(values), confidence) if values else None


def slice_subjects(item: dict, slices_per_subject: int | None = None) -> list:
    """The subject of each of an entry's test slices (``per_slice`` order).

    Entries written since the grid recorded them carry ``subjects`` and ``slice_subject``; older
    ones are read as the evaluation wrote them, ``slices_per_subject`` consecutive slices of one
    subject after another (the test split's files in order), which needs that number (the grid's
    ``_meta.profile.slices_per_subject``).
    """
    if "slice_subject" in item:
        return [item["subjects"][i] for i in item["slice_subject"]]
    n = len(next(iter(item["per_slice"].values())))
    if not slices_per_subject or n % slices_per_subject:
        raise ValueError(f"entry {entry_key(**_fields(item))!r} records no subjects, and its {n} slices are not "
                         f"whole subjects of {slices_per_subject!r} slices")
    return [i // slices_per_subject for i in range(n)]


def paired(a: dict | None, b: dict | None, metric: str = "ssim_fg", confidence: float = 0.95,
           over: str = "slices", slices_per_subject: int | None = None) -> list[float] | None:
    """``[mean, ci_low, ci_high]`` of entry ``a`` minus entry ``b`` over the same test slices, or None
    if either is missing.

    ``over="slices"`` takes each slice as an observation; ``over="subjects"`` averages the slice
    differences of each test subject first (:func:`slice_subjects`) and takes the t-interval over
    those means: slices of one subject are not independent, so this is the interval to judge by;
    ``"auto"`` is the book's rule (:func:`mrtl_core.stats.interval_over`: subjects when there are
    enough of them).
    """
    if a is None or b is None:
        return None
    if over not in ("auto", "slices", "subjects"):
        raise ValueError(f"over must be 'auto', 'slices' or 'subjects', got {over!r}")
    if over == "auto":
        over = interval_over(slice_subjects(a, slices_per_subject))
    x = np.asarray(a["per_slice"][metric], dtype=np.float64)
    y = np.asarray(b["per_slice"][metric], dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"{entry_key(**_fields(a))!r} and {entry_key(**_fields(b))!r} were scored on different "
                         f"slices ({x.size} vs {y.size})")
    if over == "slices":
        return list(difference(x, y, True, confidence))
    subjects = slice_subjects(a, slices_per_subject)
    if subjects != slice_subjects(b, slices_per_subject):
        raise ValueError(f"{entry_key(**_fields(a))!r} and {entry_key(**_fields(b))!r} were scored on different subjects")
    means, _ = subject_means(x - y, subjects)
    st = summarise(means, confidence)
    return [st["mean"], st["ci_low"], st["ci_high"]]


def test_set(results: dict, item: dict | None) -> str:
    """What an interval on an entry's test slices is over (:func:`mrtl_core.stats.interval_basis`):
    ``"4 test subjects (40 slices)"``."""
    if item is None:
        return "–"
    return interval_basis(slice_subjects(item, _slices_per_subject(results)))


def _slices_per_subject(results: dict) -> int | None:
    return results.get("_meta", {}).get("profile", {}).get("slices_per_subject")


def _value(item: dict | None, metric: str) -> float:
    return float(item["summary"][metric]["mean"]) if item is not None else math.nan


def gap_table(results: dict, metric: str = "ssim_fg") -> pd.DataFrame:
    """One row per target with an equal-data twin: pre-trained, twin, full-split scratch and their
    paired differences (``pre − native``: the generalisation gap at equal data)."""
    rows = {}
    digits = 2 if metric.startswith("psnr") else 3
    for t in targets(results):
        pre, twin, full = (entry(results, t, m) for m in ("pretrained", "native", "scratch-full"))
        if twin is None:
            continue
        sps = _slices_per_subject(results)
        rows[t] = {
            "pre-trained": _value(pre, metric),
            "native twin": _value(twin, metric),
            "pre − native [CI]": fmt_ci(paired(pre, twin, metric, over="auto", slices_per_subject=sps), digits),
            "[CI over slices]": fmt_interval((paired(pre, twin, metric) or [None] * 3)[1:], digits, signed=True),
            "scratch (full split)": _value(full, metric),
            "pre − scratch (full) [CI]": fmt_ci(paired(pre, full, metric, over="auto", slices_per_subject=sps), digits),
            "CI over": test_set(results, twin),
            "twin slices": twin.get("num_train_slices"),
        }
    table = pd.DataFrame(rows).T
    table.index.name = "target"
    return table


def curve_table(results: dict, target: str, metric: str = "ssim_fg") -> pd.DataFrame:
    """The N-curve of one target: fine-tuned and from-scratch means over seeds with their intervals,
    beside the pre-trained, full-split and (if present) equal-data references."""
    rows = {}
    for n in ns(results, target):
        row = {}
        for method in ("fine-tuned", "scratch"):
            s = seed_summary(seed_runs(results, target, method, n), metric)
            row[method] = s["mean"] if s else math.nan
            row[f"{method} CI"] = fmt_interval((s["ci_low"], s["ci_high"])) if s and s["n"] > 1 else "–"
            row[f"{method} seeds"] = s["n"] if s else 0
        rows[n] = row
    table = pd.DataFrame(rows).T
    table.index.name = "N"
    for label, key in (("pre-trained", "pretrained"), ("scratch (full split)", "scratch-full"), ("native twin", "native")):
        table[label] = _value(entry(results, target, key), metric)
    return table


def forgetting_table(results: dict, metric: str = "ssim_fg") -> pd.DataFrame:
    """Fine-tuned models back on the source: mean over seeds per target and N."""
    rows = {}
    for t in targets(results):
        row = {}
        for n in ns(results, t):
            s = seed_summary(seed_runs(results, t, "forgetting", n), metric)
            if s:
                row[f"N={n}"] = s["mean"]
        if row:
            rows[t] = row
    table = pd.DataFrame(rows).T
    table.index.name = "fine-tuned on"
    return table


def overfit_table(results: dict, metric: str = "ssim_fg") -> pd.DataFrame:
    """Fine-tuning on N slices with early stopping against the same runs without it (a longer budget,
    no validation): means over seeds, and the per-seed difference's t-interval."""
    rows = {}
    for item in _entries(results).values():
        if item["method"] != "fine-tuned-no-early-stopping":
            continue
        f = _fields(item)
        ref = entry(results, f["target"], "fine-tuned", f["n"], f["seed"])
        if ref is None:
            continue
        row = rows.setdefault((f["target"], f["n"], f["budget"]), {"with": [], "without": []})
        row["with"].append(ref["summary"][metric]["mean"])
        row["without"].append(item["summary"][metric]["mean"])
    out = {}
    for (t, n, steps), row in rows.items():
        d = summarise(np.array(row["without"]) - np.array(row["with"]))
        out[f"{t}, N={n}"] = {"early stopping": float(np.mean(row["with"])),
                              "no early stopping": float(np.mean(row["without"])), "steps without": int(steps),
                              "difference [CI over seeds]": fmt_ci([d["mean"], d["ci_low"], d["ci_high"]]),
                              "seeds": d["n"]}
    table = pd.DataFrame(out).T
    table.index.name = "fine-tuning"
    return table


def _cell(runs: list[dict | None], metric: str = "ssim") -> str:
    runs = [r for r in runs if r is not None]
    whole = seed_summary(runs, metric)
    fg = seed_summary(runs, metric + "_fg")
    if whole is None:
        return ""
    if whole["n"] == 1:
        return f"{whole['mean']:.3f} ({fg['mean']:.3f})"
    return f"{whole['mean']:.3f} ±{whole['ci_high'] - whole['mean']:.3f} ({fg['mean']:.3f})"


def markdown_table(table: pd.DataFrame, digits: int = 3, na: str = "–") -> str:
    """A DataFrame as a markdown pipe table (floats to ``digits`` places, ``na`` for NaN), without
    the optional ``tabulate`` package that ``DataFrame.to_markdown`` needs."""
    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return na if not math.isfinite(float(v)) else f"{float(v):.{digits}f}"
        return str(v)

    frame = table.reset_index()   # the index (one or several levels) becomes the first column(s)
    lines = ["| " + " | ".join(str(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def markdown_report(results: dict) -> str:
    """The benchmark's printed report: the grid, forgetting, and the equal-data gaps, as markdown."""
    sd, all_ns = seeds(results), ns(results)
    lines = [f"SSIM (foreground SSIM), test subjects; ± = half-width of the 95% t-interval over seeds {sd}", ""]
    head = ["target", "zero-filled", "CG-SENSE", "pre-trained", "native twin", "scratch (full)"]
    head += [f"FT N={n}" for n in all_ns] + [f"scratch N={n}" for n in all_ns]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in targets(results):
        cells = [t] + [_cell([entry(results, t, m)]) for m in ("zero-filled", "cg-sense", "pretrained", "native", "scratch-full")]
        cells += [_cell(seed_runs(results, t, "fine-tuned", n)) for n in all_ns]
        cells += [_cell(seed_runs(results, t, "scratch", n)) for n in all_ns]
        lines.append("| " + " | ".join(cells) + " |")
    meta = results.get("_meta", {})
    forgetting = forgetting_table(results)
    if len(forgetting):
        lines += ["", "Forgetting: foreground SSIM of the fine-tuned models back on the source, mean over seeds", "",
                  markdown_table(forgetting)]
    overfit = overfit_table(results)
    if len(overfit):
        lines += ["", "Over-fitting check (foreground SSIM): fine-tuning with the profile's budget and early stopping "
                  "on the target validation split, against a longer budget with neither; means over seeds.", "",
                  markdown_table(overfit)]
    for metric in ("ssim_fg", "ssim", "psnr"):
        gaps = gap_table(results, metric)
        if len(gaps):
            lines += ["", f"Generalisation gap at equal data ({metric}): the pre-trained U-Net minus its twin trained "
                      "on the target (as many subjects, the same schedule), and minus the full-split scratch model; "
                      "paired on the target test slices, 95% t-interval over the test subjects' mean differences "
                      "where there are enough subjects (column 'CI over'), and beside it over slices.", "",
                      markdown_table(gaps, 2 if metric.startswith("psnr") else 3)]
    lines += ["", f"profile {meta.get('profile', {}).get('name')}, torch {meta.get('torch')}, "
              f"{meta.get('threads')} threads; pre-training {meta.get('pretrain_seconds') or 0:.0f} s"
              + (f" in {meta['pretrain_precision']}" if meta.get("pretrain_precision") else "")]
    return "\n".join(lines)


def gap_sentences(results: dict, thresholds=None) -> str:
    """Per target with a twin, in words by the results chapter's rule (:class:`mrtl_core.stats.Thresholds`):
    the pre-trained U-Net against its equal-data twin, with the whole-image SSIM and PSNR gaps beside."""
    thresholds = thresholds or Thresholds()
    out = []
    for t in targets(results):
        pre, twin = entry(results, t, "pretrained"), entry(results, t, "native")
        if pre is None or twin is None:
            continue
        by = dict(over="auto", slices_per_subject=_slices_per_subject(results))
        diff = paired(pre, twin, thresholds.metric, **by)
        whole, psnr = paired(pre, twin, "ssim", **by), paired(pre, twin, "psnr", **by)
        out.append("* " + compare_sentence(diff, f"On {t} the pre-trained U-Net", "its twin trained on the target",
                                           thresholds)
                   + f"; whole-image SSIM {fmt_ci(whole)}, PSNR {fmt_ci(psnr, 2, unit=' dB')}; "
                   f"intervals over {test_set(results, twin)}.")
    return "\n".join(out)


def curves_figure(results: dict, metric: str = "ssim_fg", targets_: Sequence[str] | None = None):
    """One panel per shifted target: fine-tuned and from-scratch means over seeds against N (log
    axis, error bars = 95 % t-interval over seeds), with the pre-trained, full-split and twin
    references as horizontal lines. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    names = [t for t in (targets_ or targets(results)) if ns(results, t)]
    if not names:
        raise ValueError("the grid holds no fine-tuning runs")
    label = {"ssim": "SSIM", "ssim_fg": "SSIM (foreground)", "psnr": "PSNR (dB)"}.get(metric, metric)
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.0), squeeze=False)
    for ax, t in zip(axes[0], names):
        table = curve_table(results, t, metric)
        x = np.asarray(table.index, dtype=float)
        for method, colour, marker in (("fine-tuned", "C0", "o"), ("scratch", "C1", "s")):
            lo, hi = [], []
            for n in table.index:
                s = seed_summary(seed_runs(results, t, method, n), metric)
                ok = s is not None and math.isfinite(s["ci_low"])
                lo.append(s["mean"] - s["ci_low"] if ok else 0.0)
                hi.append(s["ci_high"] - s["mean"] if ok else 0.0)
            ax.errorbar(x, table[method].astype(float), yerr=[lo, hi], color=colour, marker=marker, capsize=3,
                        label=f"{method} on N slices")
        for ref, colour, style in (("pre-trained", "C7", "--"), ("scratch (full split)", "C3", ":"),
                                   ("native twin", "C2", "-.")):
            value = float(table[ref].iloc[0])
            if math.isfinite(value):
                ax.axhline(value, color=colour, linestyle=style, label=ref)
        ax.set_xscale("log")
        ax.set_xticks(x, [str(int(v)) for v in x])
        ax.set_xlabel("target training slices N")
        ax.set_ylabel(label)
        ax.set_title(t)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def load_field_shift(path: str | Path) -> dict:
    """The record of ``benchmarks/field_shift.py`` at ``path`` (e.g. ``benchmarks/results/field_shift-standard.json``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no field-shift ablation; write it with `python benchmarks/field_shift.py --out {path}`")
    record = json.loads(path.read_text())
    if "steps" not in record or not record["steps"]:
        raise ValueError(f"{path}: no 'steps' in the field-shift record")
    return record


def field_shift_table(record: dict, metric: str = "ssim_fg") -> pd.DataFrame:
    """One row per ablation step: each method's mean ``metric``, the pre-trained network's change and
    its gap to the 3 T twin (paired, 95 % interval)."""
    digits = 2 if metric.startswith("psnr") else 3
    rows = {}
    for step in record["steps"]:
        row = {name: scores[metric] for name, scores in step["scores"].items()}
        row["pre-trained change [CI]"] = fmt_ci(step["change"][metric], digits) if step.get("change") else "–"
        row["pre − twin [CI]"] = fmt_ci(step["gap"][metric], digits) if step.get("gap") else "–"
        rows[step["label"]] = row
    table = pd.DataFrame(rows).T
    table.index.name = "scanner"
    return table


# --------------------------------------------------------------------------------------------
# the clinical sites' ablation (benchmarks/clinical_factors.py)
# --------------------------------------------------------------------------------------------
#: The network whose changes the clinical ablation judges: the one that meets the other site's data.
FACTOR_NETWORK = "1.5 T site"


def load_clinical_factors(path: str | Path) -> dict:
    """The record of ``benchmarks/clinical_factors.py`` at ``path``, with a clear error where it is
    missing or holds no steps."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no clinical ablation; write it with "
                                f"`python benchmarks/clinical_factors.py --out {path}`")
    record = json.loads(path.read_text())
    if not record.get("_meta", {}).get("steps"):
        raise ValueError(f"{path}: no '_meta.steps' in the clinical ablation record")
    return record


def _step_entries(record: dict, step: str, network: str) -> list[dict]:
    return [v for k, v in record.items() if not k.startswith("_") and isinstance(v, dict)
            and v.get("target") == step and v.get("method") == network]


def factor_rows(record: dict, metric: str = "ssim_fg") -> list[dict]:
    """One row per recorded step of a clinical ablation: each network's mean ``metric`` over its seeds
    (and zero-filling's), and for :data:`FACTOR_NETWORK` its ``change`` against the step's reference
    (both sides averaged over seeds slice by slice, then :func:`paired` by the book's rule), the range
    of the per-seed changes (``change_seeds``), and its ``gap`` to the other site's network at the step."""
    networks = record["_meta"]["sites"]
    other = next(n for n in networks if n != FACTOR_NETWORK)
    rows = []
    for step in record["_meta"]["steps"]:
        label, ref = step["label"], step["reference"]
        runs = {n: _step_entries(record, label, n) for n in (*networks, "zero-filled")}
        if not all(runs.values()):
            continue
        row = {"step": label, "reference": ref,
               **{n: float(np.mean([r["summary"][metric]["mean"] for r in v])) for n, v in runs.items()}}
        mine = _seed_average(runs[FACTOR_NETWORK], metric)
        row["gap"] = paired(mine, _seed_average(runs[other], metric), metric, over="auto")
        before = _step_entries(record, ref, FACTOR_NETWORK) if ref else []
        row["change"] = paired(mine, _seed_average(before, metric), metric, over="auto") if before else None
        by_seed = {r["seed"]: r for r in before}
        per_seed = [paired(r, by_seed[r["seed"]], metric, over="auto")[0] for r in runs[FACTOR_NETWORK]
                    if r["seed"] in by_seed]
        row["change_seeds"] = (min(per_seed), max(per_seed)) if per_seed else None
        rows.append(row)
    return rows


def factor_table(record: dict, metric: str = "ssim_fg") -> pd.DataFrame:
    """:func:`factor_rows` as a table: the networks' scores, the change with its interval over test
    subjects and the per-seed range, and the gap between the two sites' networks."""
    digits = 2 if metric.startswith("psnr") else 3
    networks = record["_meta"]["sites"]
    table = {}
    for row in factor_rows(record, metric):
        cells = {f"{n}'s network" if n != "zero-filled" else n: row[n] for n in (*networks, "zero-filled")}
        cells["change [CI]"] = fmt_ci(row["change"], digits) if row["change"] else "–"
        cells["seed range"] = fmt_interval(row["change_seeds"], digits, signed=True) if row["change_seeds"] else "–"
        cells["against"] = row["reference"] or "–"
        table[row["step"]] = cells
    frame = pd.DataFrame(table).T
    frame.index.name = "step"
    return frame


def _factor_name(label: str) -> str:
    """``"+ 3 T matrix"`` / ``"1.5 T site + 3 T matrix alone"`` -> ``"the 3 T matrix"``."""
    name = label.split("+ ")[-1].split(" (")[0]
    return "the " + name.removesuffix(" alone")


def factor_sentence(record: dict, thresholds: Thresholds | None = None) -> str:
    """The clinical ablation in words, by the book's rule: the step of the cumulative path that costs
    the 1.5 T site's network most and its share of the whole path's change, the other steps, and each
    step switched on alone."""
    thresholds = thresholds or Thresholds()
    rows = factor_rows(record, thresholds.metric)
    if not rows:
        return "*the clinical ablation record holds no complete step*"
    labels = [s["label"] for s in record["_meta"]["steps"]]
    path = [r for r in rows if r["change"] is not None and labels.index(r["reference"]) == labels.index(r["step"]) - 1]
    alone = [r for r in rows if r["change"] is not None and r not in path]
    costly = sorted((r for r in path if classify(r["change"], thresholds) == "worse"), key=lambda r: r["change"][0])
    its = f"its {thresholds.label} is "
    words = []
    if costly:
        words.append(f"Along the path from the 1.5 T site to the 3 T site, the step that costs the 1.5 T site's "
                     f"network most is {_factor_name(costly[0]['step'])}: " + its + change_phrase(costly[0]["change"], thresholds) + ".")
        if len(costly) > 1:
            words.append("Also costly: " + "; ".join(f"{_factor_name(r['step'])}, " + change_phrase(r["change"], thresholds)
                                                     for r in costly[1:]) + ".")
    else:
        words.append("No step of the path from the 1.5 T site to the 3 T site costs the 1.5 T site's network a "
                     "difference that counts by the book's rule.")
    quiet = [_factor_name(r["step"]) for r in path if r not in costly]
    if quiet:
        words.append("The other steps (" + ", ".join(quiet) + ") each change it by less than counts.")
    if path and rows[0]["step"] == labels[0] and path[-1]["step"] == labels[len(path)]:
        metric = thresholds.metric
        total = paired(_seed_average(_step_entries(record, path[-1]["step"], FACTOR_NETWORK), metric),
                       _seed_average(_step_entries(record, labels[0], FACTOR_NETWORK), metric), metric, over="auto")
        share = (f"; {_factor_name(costly[0]['step'])} is {100 * costly[0]['change'][0] / total[0]:.0f} % of that"
                 if costly and total[0] < 0 else "")
        words.append(f"Over the whole path {its}" + change_phrase(total, thresholds) + share + ".")
    for r in alone:
        words.append(f"With {_factor_name(r['step'])} alone on the 1.5 T site, the network's {thresholds.label} is "
                     + change_phrase(r["change"], thresholds) + ".")
    return " ".join(words)


# --------------------------------------------------------------------------------------------
# the fine-tuning recipes' record (benchmarks/finetune_recipes.py)
# --------------------------------------------------------------------------------------------
def _seed_average(entries: Sequence[dict], metric: str) -> dict:
    """One entry whose per-slice ``metric`` is the mean over ``entries`` (runs of other seeds, scored on
    the same test slices): what a paired difference over seeds is taken of."""
    entries = list(entries)
    return {**entries[0], "per_slice": {metric: np.mean([e["per_slice"][metric] for e in entries], 0).tolist()}}


def seed_averaged_difference(results: dict, target: str, method: str, reference: str = "pretrained",
                             metric: str = "ssim_fg") -> list[float] | None:
    """``[mean, lo, hi]``: the runs of ``method`` on ``target`` (one per seed) averaged slice by slice,
    minus the ``reference`` entry (one network), :func:`paired` by the book's rule; None if either is
    missing. ``benchmarks/source_control.py`` judges each arm against the pre-trained network with it."""
    ref = entry(results, target, reference)
    runs = [v for v in _entries(results).values() if v.get("target") == target and v.get("method") == method]
    if ref is None or not runs:
        return None
    return paired(_seed_average(runs, metric), ref, metric, over="auto")


def recipe_rows(record: dict, metric: str = "ssim_fg") -> list[dict]:
    """One row per (recipe, N) of a ``benchmarks/finetune_recipes.py`` record: the mean over seeds,
    the share of the gap closed, ``(recipe - pre-trained) / (twin - pre-trained)`` (its mean and range
    over seeds), the paired difference to the baseline (the seeds' per-slice scores averaged, then
    :func:`paired` by the book's rule) and how many runs had their best validation round at the last.
    A recipe with a peer in the record's ``_meta["peers"]`` (``experiment.RECIPE_PEERS``: the recipe it
    differs from in one setting) also gets ``peer`` and ``vs_peer``, the same difference to that peer."""
    p, t = (record[k]["summary"][metric]["mean"] for k in ("pre-trained", "twin"))
    runs = [v for k, v in record.items() if not k.startswith("_") and "n" in v]
    rows = []
    for recipe in dict.fromkeys(r["method"] for r in runs):
        for n in sorted({r["n"] for r in runs if r["method"] == recipe}):
            mine = sorted((r for r in runs if r["method"] == recipe and r["n"] == n), key=lambda r: r["seed"])
            values = np.array([r["summary"][metric]["mean"] for r in mine])
            shares = (values - p) / (t - p) if t != p else np.full(values.shape, np.nan)
            row = {"recipe": recipe, "N": n, "seeds": len(mine), metric: float(values.mean()),
                   "share_closed": float(shares.mean()), "share_range": [float(shares.min()), float(shares.max())],
                   "at_cap": sum(bool(r.get("at_cap")) for r in mine), "steps": [r.get("steps") for r in mine]}
            base = [record.get(f"baseline | N={n} | seed={r['seed']}") for r in mine]
            if recipe != "baseline" and all(b is not None for b in base):
                row["vs_baseline"] = paired(_seed_average(mine, metric), _seed_average(base, metric), metric, over="auto")
            peer = record.get("_meta", {}).get("peers", {}).get(recipe)
            peers = [record.get(f"{peer} | N={n} | seed={r['seed']}") for r in mine] if peer else []
            if peers and all(b is not None for b in peers):   # the one setting that tells them apart
                row["peer"], row["vs_peer"] = peer, paired(_seed_average(mine, metric), _seed_average(peers, metric),
                                                            metric, over="auto")
            rows.append(row)
    return rows


def recipe_table(record: dict, metric: str = "ssim_fg") -> pd.DataFrame:
    """:func:`recipe_rows` as the table chapter 8 shows (shares in per cent; the difference to a
    recipe's one-setting peer where the record has one)."""
    digits = 2 if metric.startswith("psnr") else 4
    rows = [{"recipe": r["recipe"], "N": r["N"], "seeds": r["seeds"], metric: r[metric],
             "share of the gap closed": f"{100 * r['share_closed']:.0f} % "
                                        f"[{100 * r['share_range'][0]:.0f}, {100 * r['share_range'][1]:.0f}]",
             "vs baseline [CI]": fmt_ci(r["vs_baseline"], digits) if r.get("vs_baseline") else "–",
             "vs its peer [CI]": f"{r['peer']}: {fmt_ci(r['vs_peer'], digits)}" if r.get("vs_peer") else "–",
             "best round = last": f"{r['at_cap']}/{r['seeds']}"} for r in recipe_rows(record, metric)]
    table = pd.DataFrame(rows).set_index(["recipe", "N"])
    if (table["vs its peer [CI]"] == "–").all():   # no recipe of this record has a one-setting peer
        table = table.drop(columns="vs its peer [CI]")
    return table


#: the full-split scratch networks of a ``network_seeds.py --scratch`` record
FULL_SPLIT = "scratch (full split)"
#: the rows of a recipe record that train from scratch on the N slices (``finetune_recipes.py --scratch``)
SCRATCH_PREFIX = "scratch-"


def _recipe_runs(record: dict, method: str, n: int | None = None) -> list[dict]:
    return sorted((v for k, v in record.items() if not k.startswith("_") and isinstance(v, dict)
                   and v.get("method") == method and (n is None or v.get("n") == n)), key=lambda v: v.get("seed") or 0)


def _recipe_difference(record: dict, a: str, b: str, n: int, metric: str) -> list[float] | None:
    """Recipe ``a`` minus recipe ``b`` at ``n`` over the seeds both ran, seed-averaged, :func:`paired`."""
    ra, rb = _recipe_runs(record, a, n), _recipe_runs(record, b, n)
    seeds = {r["seed"] for r in ra} & {r["seed"] for r in rb}
    ra, rb = [r for r in ra if r["seed"] in seeds], [r for r in rb if r["seed"] in seeds]
    if not ra:
        return None
    return paired(_seed_average(ra, metric), _seed_average(rb, metric), metric, over="auto")


def recipe_claim_cases(record: dict, seed_record: dict | None = None,
                       thresholds: Thresholds | None = None) -> dict[str, list[dict]]:
    """A recipe record's cases for two of the paper's claims (``report.claims``'s ``extra_cases``):

    * ``finetune_beats_scratch_same_n``: each recipe against scratch-on-N under the same budget rule
      (its ``scratch-<recipe>`` rows), per N;
    * ``finetune_close_to_full``: the best fine-tuning recipe at N <= 10 and at the largest N against
      the full-split scratch networks of ``seed_record`` (``network_seeds.py --scratch``, the same test
      slices), where those beat the pre-trained network by the minimum effect.

    Each difference is seed-averaged slice by slice and :func:`paired` by the book's rule, for every
    metric both sides recorded."""
    thresholds = thresholds or Thresholds()
    meta = record["_meta"]
    name = f"{meta['target']} R{meta['acceleration']:g}"
    metrics = [m for m in METRICS if m in record["pre-trained"]["per_slice"]]
    cases: dict[str, list[dict]] = {"finetune_beats_scratch_same_n": [], "finetune_close_to_full": []}
    rows = recipe_rows(record, thresholds.metric)
    for r in (r for r in rows if r["recipe"].startswith(SCRATCH_PREFIX)):
        recipe = r["recipe"][len(SCRATCH_PREFIX):]
        diff = {m: _recipe_difference(record, recipe, r["recipe"], r["N"], m) for m in metrics}
        if diff[thresholds.metric] is not None:
            cases["finetune_beats_scratch_same_n"].append({
                "case": f"{name}, N = {r['N']} ({recipe})", "reference": f"scratch-on-N ({r['recipe']})", "diff": diff,
                "how": f"benchmarks/finetune_recipes.py, {r['seeds']} seeds, the same budget rule"})
    full = list(_seed_entries(seed_record or {}, FULL_SPLIT).values())
    pre = record["pre-trained"]["summary"][thresholds.metric]["mean"]
    if full and gap_to_recover(pre, float(np.mean([v["summary"][thresholds.metric]["mean"] for v in full])), thresholds):
        tuned = [r for r in rows if r["recipe"] != "long" and not r["recipe"].startswith(SCRATCH_PREFIX)]
        largest = max((r["N"] for r in tuned), default=None)
        for pick in ([r for r in tuned if r["N"] <= 10], [r for r in tuned if r["N"] == largest and largest > 10]):
            if not pick:
                continue
            best = max(pick, key=lambda r: r["share_closed"])
            runs = _recipe_runs(record, best["recipe"], best["N"])
            diff = {m: paired(_seed_average(runs, m), _seed_average(full, m), m, over="auto") for m in metrics
                    if all(m in v["per_slice"] for v in full)}
            cases["finetune_close_to_full"].append({
                "case": f"{name}, N = {best['N']} ({best['recipe']})", "diff": diff,
                "reference": f"full-split scratch ({len(full)} seeds)",
                "how": f"benchmarks/finetune_recipes.py, the best recipe at its N, {best['seeds']} seeds"})
    return cases


def recipe_title(record: dict) -> str:
    """``"knee-1.5T, R = 4"`` (``", from brain-1.5T-clinical"`` where another network was fine-tuned,
    ``", rates tuned"`` where each recipe's rate was chosen on validation)."""
    meta = record["_meta"]
    source = f", from {meta['source']}" if meta.get("source") else ""
    tuned = ", rates tuned" if meta.get("finetune_tuning") else ""
    return f"{meta['target']}, R = {meta['acceleration']:g}{source}{tuned}"


#: the variants of a target's recipe record, most preferred first: every recipe's rate chosen on
#: validation (``--finetune-lrs``), then the budget study at the profile's rate, then the plain name
RECIPE_RECORD_VARIANTS = ("-lrtuned", "-budget", "")


def preferred_recipe_record(folder: str | Path, profile: str, name: str) -> str:
    """The name (after ``finetune-recipes-<profile>-``) of the record a chapter reads for ``name``
    (e.g. ``"knee-1.5T-R4"``): the first of :data:`RECIPE_RECORD_VARIANTS` with a file in ``folder``,
    else ``name`` itself (which the reader then finds missing)."""
    for tail in RECIPE_RECORD_VARIANTS:
        if (Path(folder) / f"finetune-recipes-{profile}-{name}{tail}.json").is_file():
            return f"{name}{tail}"
    return name


def scratch_share(recipe_record: dict, seed_record: dict | None, metric: str = "ssim_fg") -> list[float] | None:
    """The full-split scratch networks of a ``network_seeds.py --scratch`` record on the recipe record's
    axis: ``(scratch - pre-trained) / (twin - pre-trained)`` with the recipe record's own pre-trained and
    twin scores, as ``[mean, min, max]`` over the scratch seeds; None where there are none."""
    if seed_record is None:
        return None
    values = [v["summary"][metric]["mean"] for v in _seed_entries(seed_record, FULL_SPLIT).values()]
    p, t = (recipe_record[k]["summary"][metric]["mean"] for k in ("pre-trained", "twin"))
    if not values or t == p:
        return None
    shares = (np.array(values) - p) / (t - p)
    return [float(shares.mean()), float(shares.min()), float(shares.max())]


def recipe_curves_figure(records: Sequence[dict], scratch: Sequence[dict | None] | None = None,
                         metric: str = "ssim_fg"):
    """The data-efficiency curves of the fine-tuning recipes: one panel per recipe record, the share of
    the gap to the equal-data twin that each recipe closes against N (log axis; mean over seeds, bars
    the seeds' range), for every recipe run at two or more N. The pre-trained network (0 %) and the
    twin (100 %) are the axis; ``scratch[i]`` (a ``network_seeds.py --scratch`` record for the same
    target, or None) adds the full-split scratch networks as a line with their seeds' range as a band.
    Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    records = list(records)
    if not records:
        raise ValueError("no fine-tuning recipe records")
    scratch = list(scratch) if scratch is not None else [None] * len(records)
    if len(scratch) != len(records):
        raise ValueError(f"{len(records)} recipe records but {len(scratch)} scratch records")
    fig, axes = plt.subplots(1, len(records), figsize=(5.0 * len(records), 4.0), squeeze=False, sharey=True)
    all_rows = [recipe_rows(record, metric) for record in records]
    # one colour and marker per recipe on every panel (black and grey are the references')
    recipes = list(dict.fromkeys(r["recipe"] for rows in all_rows for r in rows))
    for ax, record, seeds_record, rows in zip(axes[0], records, scratch, all_rows):
        drawn = []
        for recipe in dict.fromkeys(r["recipe"] for r in rows):
            mine = [r for r in rows if r["recipe"] == recipe]
            if len(mine) < 2:
                continue
            i = recipes.index(recipe)
            n = np.array([r["N"] for r in mine], dtype=float)
            share = 100 * np.array([r["share_closed"] for r in mine])
            lo = share - 100 * np.array([r["share_range"][0] for r in mine])
            hi = 100 * np.array([r["share_range"][1] for r in mine]) - share
            ax.errorbar(n, share, yerr=[lo, hi], marker="os^vDP"[i % 6], capsize=3, color=f"C{i % 7}",
                        label=f"{recipe} ({mine[0]['seeds']} seeds)")
            drawn.extend(n)
        ax.axhline(100, color="k", linestyle="-.", label="equal-data twin")
        ax.axhline(0, color="0.5", linestyle="--", label="pre-trained")
        full = scratch_share(record, seeds_record, metric)
        if full is not None:
            ax.axhline(100 * full[0], color="k", linestyle=":", label="scratch, full split")
            ax.axhspan(100 * full[1], 100 * full[2], color="0.5", alpha=0.2)
        if drawn:
            ticks = sorted(set(drawn))
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(ticks, [str(int(v)) for v in ticks])
        ax.set_xlabel("target training slices N")
        ax.set_title(recipe_title(record), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("share of the gap to the twin closed (%)")
    fig.tight_layout()
    return fig


def _seed_spread(lo: float, hi: float) -> str:
    """The range of a share over seeds in words, in whole per cent."""
    lo_pc, hi_pc = f"{100 * lo:.0f}", f"{100 * hi:.0f}"
    return f"every seed {lo_pc} %" if lo_pc == hi_pc else f"seeds {lo_pc} to {hi_pc} %"


def recipe_sentence(record: dict, thresholds: Thresholds | None = None, long_budget: int | None = None) -> str:
    """One record of ``benchmarks/finetune_recipes.py`` in words, by the book's rule: the best recipe at
    N <= 10 and at the largest N (when above 10) by the share of the gap it closes, its paired difference
    to the baseline, the ``long`` diagnostic (``long_budget`` times the baseline's steps) beside the
    baseline at its N, and how many of the baseline's runs had their best validation round at the last.

    ``long`` is a diagnostic of the budget, never picked as the best; where the baseline is best (a tie
    goes to it), or is the only recipe run at that N, the sentence says so instead of naming a "best"."""
    thresholds = thresholds or Thresholds()
    meta, all_rows = record["_meta"], recipe_rows(record, thresholds.metric)
    rows = [r for r in all_rows if r["recipe"] != "long" and not r["recipe"].startswith(SCRATCH_PREFIX)]
    largest = max(r["N"] for r in rows)
    groups = [("N ≤ 10", [r for r in rows if r["N"] <= 10])]
    if largest > 10:
        groups.append((f"N = {largest}", [r for r in rows if r["N"] == largest]))
    parts = []
    for label, pick in groups:
        if not pick:
            continue
        best = max(pick, key=lambda r: r["share_closed"])   # a tie goes to the first row, the baseline
        lo, hi = best["share_range"]
        spread = _seed_spread(lo, hi) if best["seeds"] > 1 else "one seed"
        if best["recipe"] != "baseline":
            closes = f"the best is *{best['recipe']}* (N = {best['N']}), closing"
        elif len(pick) > 1:
            closes = f"no recipe beats the baseline, which (N = {best['N']}) closes"
        else:
            closes = f"only the baseline ran; it (N = {best['N']}) closes"
        text = f"at {label} {closes} {100 * best['share_closed']:.0f} % of the gap to the equal-data twin ({spread})"
        if best.get("vs_baseline"):
            text += "; " + compare_sentence(best["vs_baseline"], "it", "the baseline", thresholds)
        parts.append(text)
    times = f"{long_budget} times" if long_budget else "more than"
    for r in (r for r in all_rows if r["recipe"] == "long" and r.get("vs_baseline")):
        base = next(x for x in rows if x["recipe"] == "baseline" and x["N"] == r["N"])
        lo, hi = r["share_range"]
        parts.append(f"with {times} the baseline's steps at N = {r['N']}, fine-tuning closes "
                     f"{100 * r['share_closed']:.0f} % ({_seed_spread(lo, hi)}; the baseline "
                     f"{100 * base['share_closed']:.0f} %) and {r['at_cap']} of its {r['seeds']} runs still had their "
                     "best round at the last: " + compare_sentence(r["vs_baseline"], "the longer run", "the baseline", thresholds))
    for r in (r for r in rows if r.get("vs_peer")):
        parts.append(f"against *{r['peer']}* (one setting apart) at N = {r['N']}, "
                     + compare_sentence(r["vs_peer"], f"*{r['recipe']}*", f"*{r['peer']}*", thresholds))
    scratch = [r for r in all_rows if r["recipe"].startswith(SCRATCH_PREFIX)]
    if scratch:
        tuned = meta.get("scratch") or {}
        lr = f", learning rate {tuned['lr']:g} chosen on validation at N = {tuned['tune_n']}" if tuned.get("lr") else ""
        parts.append(f"from scratch on the same N under the same budget rule (*{scratch[0]['recipe']}*{lr}) the "
                     "network closes " + ", ".join(f"{100 * r['share_closed']:.0f} % at N = {r['N']}" for r in scratch))
        for r in scratch:
            d = _recipe_difference(record, r["recipe"][len(SCRATCH_PREFIX):], r["recipe"], r["N"], thresholds.metric)
            if d is not None:
                parts.append(f"at N = {r['N']}, " + compare_sentence(d, f"fine-tuning with *{r['recipe'][len(SCRATCH_PREFIX):]}*",
                                                                     "it", thresholds))
    capped = sum(r["at_cap"] for r in rows if r["recipe"] == "baseline")
    runs = sum(r["seeds"] for r in rows if r["recipe"] == "baseline")
    basis = interval_basis(slice_subjects(record["pre-trained"]))
    within = " validating within the N slices" if meta.get("validation") == "within-n" else ""
    source = meta.get("source")   # set only where another network than the book's pre-trained one was fine-tuned
    within += f" from the {source} network" if source else ""
    lr, default_lr = meta.get("finetune_lr"), meta.get("profile", {}).get("finetune_lr")
    within += f", fine-tuning at a learning rate of {lr:g} (the profile's {default_lr:g})" if lr and lr != default_lr else ""
    tuning = meta.get("finetune_tuning") or {}
    if tuning:   # benchmarks/finetune_recipes.py --finetune-lrs: each recipe's rate chosen on validation
        within += (f", each recipe at the fine-tuning rate chosen on validation at N = "
                   f"{'/'.join(sorted({str(c['tune_n']) for c in tuning.values()}))} ("
                   + ", ".join(f"{recipe} {c['lr']:g}" for recipe, c in tuning.items())
                   + (f"; the profile's {default_lr:g}" if default_lr else "") + ")")
    text = (f"on {meta['target']} at R = {meta['acceleration']:g}{within}, " + "; ".join(parts)
            + f". {capped} of the baseline's {runs} runs had their best round at their last. Intervals are over {basis}")
    return text[0].upper() + text[1:] + "."


# --------------------------------------------------------------------------------------------
# networks over training seeds (benchmarks/network_seeds.py)
# --------------------------------------------------------------------------------------------
def _seed_entries(record: dict, network: str) -> dict[int, dict]:
    return {int(v["seed"]): v for k, v in record.items()
            if not k.startswith("_") and isinstance(v, dict) and v.get("method") == network}


def seed_comparison(record: dict, a: str, b: str, thresholds: Thresholds | None = None) -> dict | None:
    """Network ``a`` minus network ``b`` of a ``benchmarks/network_seeds.py`` record, three ways, so the
    spread over training is read apart from the spread over test data:

    * ``per_seed``: ``{seed: [mean, lo, hi]}``, the two networks of one seed, :func:`paired` by the book's rule;
    * ``averaged``: each network's per-slice scores averaged over its seeds, then :func:`paired`;
    * ``over_seeds``: each seed's mean score one observation, Welch's interval between the two samples
      (what a new pair of trainings would show on this test set); None with fewer than two seeds each.

    ``spread_a``/``spread_b`` summarise the seed means (:func:`~mrtl_core.stats.summarise`), and
    ``equal_over_seeds`` is whether both ``averaged`` and ``over_seeds`` are equivalent within the
    minimum effect (:func:`~mrtl_core.stats.equivalent`). None unless both networks have a seed.
    """
    thresholds = thresholds or Thresholds()
    metric = thresholds.metric
    ea, eb = _seed_entries(record, a), _seed_entries(record, b)
    if not ea or not eb:
        return None

    means_a = np.array([e["summary"][metric]["mean"] for e in ea.values()])
    means_b = np.array([e["summary"][metric]["mean"] for e in eb.values()])
    mean_diff = paired(_seed_average(ea.values(), metric), _seed_average(eb.values(), metric), metric, over="auto")
    over_seeds = list(difference(means_a, means_b, paired=False)) if len(ea) > 1 and len(eb) > 1 else None
    return {"a": a, "b": b, "seeds_a": sorted(ea), "seeds_b": sorted(eb),
            "per_seed": {s: paired(ea[s], eb[s], metric, over="auto") for s in sorted(set(ea) & set(eb))},
            "averaged": mean_diff, "over_seeds": over_seeds,
            "spread_a": summarise(means_a), "spread_b": summarise(means_b),
            "equal_over_seeds": bool(over_seeds is not None and equivalent(mean_diff, thresholds)
                                     and equivalent(over_seeds, thresholds))}


def _spread(sd: float, digits: int) -> str:
    """A standard deviation to ``digits`` places, or to one significant digit where those would show 0."""
    return f"{sd:.{digits}f}" if sd == 0 or sd >= 10 ** -digits else f"{sd:.1g}"


def seed_sentence(record: dict, a: str, b: str, thresholds: Thresholds | None = None) -> str:
    """:func:`seed_comparison` in words, by the book's rule: the seed-averaged difference over test
    subjects, the seeds' spread, and the difference over seeds (Welch)."""
    thresholds = thresholds or Thresholds()
    c = seed_comparison(record, a, b, thresholds)
    if c is None:
        return f"*no {a} or no {b} in the record*"
    sa, sb, d = c["spread_a"], c["spread_b"], thresholds.digits
    basis = interval_basis(slice_subjects(next(iter(_seed_entries(record, a).values()))))
    text = (f"averaged over seeds {c['seeds_a']} and {c['seeds_b']}, "
            + compare_sentence(c["averaged"], f"the {a} network", f"the {b}", thresholds)
            + f" over {basis}; its seed means spread by {_spread(sa['std'], d)} (sd), the {b}'s by {_spread(sb['std'], d)}")
    if c["over_seeds"] is not None:
        text += ("; taking each seed's mean as one observation (Welch), "
                 + compare_sentence(c["over_seeds"], f"the {a} network", f"the {b}", thresholds))
    return text
