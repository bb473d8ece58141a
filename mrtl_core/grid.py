"""Tables of the experiment grid that ``benchmarks/experiment.py`` records.

The grid script appends one entry per finished evaluation to a JSON file:
``{"<target> | <method>[ N=<n> seed=<s>]": {"target", "method", ["n", "seed"], "summary": {metric:
{"mean", "ci_low", "ci_high", ...}}, "per_slice": {metric: [...]}}, "_meta": {...}}``, with methods
``zero-filled``, ``cg-sense``, ``pretrained``, ``scratch-full``, ``native`` (the pre-trained
network's equal-data twin on the target), ``fine-tuned``, ``scratch`` and ``forgetting`` (a
fine-tuned model back on the source). The functions here turn that file into the tables the
benchmark prints and the results chapter shows; none of them trains or evaluates anything.

Two kinds of interval: a paired one over test slices (two methods on the same slices and masks),
and, for runs repeated over seeds, the t-interval of the mean over seeds.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .stats import Thresholds, compare_sentence, fmt_ci, fmt_interval, summarise

__all__ = ["results_dir", "load_grid", "seeds", "ns", "targets", "seed_summary", "paired", "gap_table",
           "curve_table", "forgetting_table", "overfit_table", "markdown_table", "markdown_report", "gap_sentences", "curves_figure",
           "load_field_shift", "field_shift_table"]

METRICS = ("ssim", "ssim_fg", "psnr", "psnr_fg")


def results_dir() -> Path:
    """``benchmarks/results`` of the source checkout this package was imported from."""
    return Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def load_grid(path: str | Path | None = None, profile: str = "standard") -> dict:
    """The grid JSON at ``path`` (default ``results_dir()/experiment-<profile>.json``).

    Raises ``FileNotFoundError`` naming the file and the command that writes it, and ``ValueError``
    naming an entry that lacks what the tables read.
    """
    path = Path(path) if path is not None else results_dir() / f"experiment-{profile}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no grid results; write them with "
                                f"`python benchmarks/experiment.py --profile {profile}`")
    results = json.loads(path.read_text())
    for key, entry in results.items():
        if key.startswith("_"):
            continue
        for field in ("target", "method", "summary", "per_slice"):
            if field not in entry:
                raise ValueError(f"{path}: entry {key!r} has no {field!r}")
    return results


def _entries(results: dict) -> dict[str, dict]:
    return {k: v for k, v in results.items() if not k.startswith("_")}


def seeds(results: dict) -> list[int]:
    return sorted({v["seed"] for v in _entries(results).values() if "seed" in v})


def ns(results: dict, target: str | None = None) -> list[int]:
    return sorted({v["n"] for v in _entries(results).values() if "n" in v and (target is None or v["target"] == target)})


def targets(results: dict) -> list[str]:
    return list(dict.fromkeys(v["target"] for v in _entries(results).values()))


def seed_summary(results: dict, keys: Sequence[str], metric: str = "ssim_fg", confidence: float = 0.95) -> dict | None:
    """Mean over the runs ``keys`` present (one per seed) of their test-set means, with the t-interval
    (:func:`mrtl_core.stats.summarise`; NaN bounds for a single run)."""
    values = [results[k]["summary"][metric]["mean"] for k in keys if k in results]
    return summarise(np.array(values), confidence) if values else None


def paired(results: dict, key_a: str, key_b: str, metric: str = "ssim_fg", confidence: float = 0.95) -> list[float] | None:
    """``[mean, ci_low, ci_high]`` of ``a - b`` over the same test slices, or None if either is missing."""
    if key_a not in results or key_b not in results:
        return None
    a = np.asarray(results[key_a]["per_slice"][metric], dtype=np.float64)
    b = np.asarray(results[key_b]["per_slice"][metric], dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{key_a!r} and {key_b!r} were scored on different slices ({a.size} vs {b.size})")
    s = summarise(a - b, confidence)
    return [s["mean"], s["ci_low"], s["ci_high"]]


def _value(results: dict, key: str, metric: str) -> float:
    return float(results[key]["summary"][metric]["mean"]) if key in results else math.nan


def gap_table(results: dict, metric: str = "ssim_fg") -> pd.DataFrame:
    """One row per target with an equal-data twin: pre-trained, twin, full-split scratch and their
    paired differences (``pre − native``: the generalisation gap at equal data)."""
    rows = {}
    digits = 2 if metric.startswith("psnr") else 3
    for t in targets(results):
        if f"{t} | native" not in results:
            continue
        rows[t] = {
            "pre-trained": _value(results, f"{t} | pretrained", metric),
            "native twin": _value(results, f"{t} | native", metric),
            "pre − native [CI]": fmt_ci(paired(results, f"{t} | pretrained", f"{t} | native", metric), digits),
            "scratch (full split)": _value(results, f"{t} | scratch-full", metric),
            "pre − scratch (full) [CI]": fmt_ci(paired(results, f"{t} | pretrained", f"{t} | scratch-full", metric), digits),
            "twin slices": results[f"{t} | native"].get("num_train_slices"),
        }
    table = pd.DataFrame(rows).T
    table.index.name = "target"
    return table


def curve_table(results: dict, target: str, metric: str = "ssim_fg") -> pd.DataFrame:
    """The N-curve of one target: fine-tuned and from-scratch means over seeds with their intervals,
    beside the pre-trained, full-split and (if present) equal-data references."""
    sd = seeds(results)
    rows = {}
    for n in ns(results, target):
        row = {}
        for method in ("fine-tuned", "scratch"):
            s = seed_summary(results, [f"{target} | {method} N={n} seed={x}" for x in sd], metric)
            row[method] = s["mean"] if s else math.nan
            row[f"{method} CI"] = fmt_interval((s["ci_low"], s["ci_high"])) if s and s["n"] > 1 else "–"
            row[f"{method} seeds"] = s["n"] if s else 0
        rows[n] = row
    table = pd.DataFrame(rows).T
    table.index.name = "N"
    for label, key in (("pre-trained", "pretrained"), ("scratch (full split)", "scratch-full"), ("native twin", "native")):
        table[label] = _value(results, f"{target} | {key}", metric)
    return table


def forgetting_table(results: dict, metric: str = "ssim_fg") -> pd.DataFrame:
    """Fine-tuned models back on the source: mean over seeds per target and N."""
    sd = seeds(results)
    rows = {}
    for t in targets(results):
        row = {}
        for n in ns(results, t):
            s = seed_summary(results, [f"{t} | forgetting N={n} seed={x}" for x in sd], metric)
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
    for key, entry in _entries(results).items():
        if entry["method"] != "fine-tuned-no-early-stopping":
            continue
        t, n, seed = entry["target"], entry["n"], entry["seed"]
        steps = key.split("steps=")[1].split()[0]
        ref = f"{t} | fine-tuned N={n} seed={seed}"
        if ref not in results:
            continue
        row = rows.setdefault((t, n, steps), {"with": [], "without": []})
        row["with"].append(results[ref]["summary"][metric]["mean"])
        row["without"].append(entry["summary"][metric]["mean"])
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


def _cell(results: dict, keys: list[str], metric: str = "ssim") -> str:
    whole = seed_summary(results, keys, metric)
    fg = seed_summary(results, keys, metric + "_fg")
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
        cells = [t] + [_cell(results, [f"{t} | {m}"]) for m in ("zero-filled", "cg-sense", "pretrained", "native", "scratch-full")]
        cells += [_cell(results, [f"{t} | fine-tuned N={n} seed={s}" for s in sd]) for n in all_ns]
        cells += [_cell(results, [f"{t} | scratch N={n} seed={s}" for s in sd]) for n in all_ns]
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
                      "paired over the target test slices, 95% t-interval.", "",
                      markdown_table(gaps, 2 if metric.startswith("psnr") else 3)]
    lines += ["", f"profile {meta.get('profile', {}).get('name')}, torch {meta.get('torch')}, "
              f"{meta.get('threads')} threads; pre-training {meta.get('pretrain_seconds') or 0:.0f} s"]
    return "\n".join(lines)


def gap_sentences(results: dict, thresholds=None) -> str:
    """Per target with a twin, in words by the results chapter's rule (:class:`mrtl_core.stats.Thresholds`):
    the pre-trained U-Net against its equal-data twin, with the whole-image SSIM and PSNR gaps beside."""
    thresholds = thresholds or Thresholds()
    out = []
    for t in targets(results):
        diff = paired(results, f"{t} | pretrained", f"{t} | native", thresholds.metric)
        if diff is None:
            continue
        whole = paired(results, f"{t} | pretrained", f"{t} | native", "ssim")
        psnr = paired(results, f"{t} | pretrained", f"{t} | native", "psnr")
        out.append("* " + compare_sentence(diff, f"On {t} the pre-trained U-Net", "its twin trained on the target",
                                           thresholds)
                   + f"; whole-image SSIM {fmt_ci(whole)}, PSNR {fmt_ci(psnr, 2, unit=' dB')}.")
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
        sd = seeds(results)
        for method, colour, marker in (("fine-tuned", "C0", "o"), ("scratch", "C1", "s")):
            lo, hi = [], []
            for n in table.index:
                s = seed_summary(results, [f"{t} | {method} N={n} seed={x_}" for x_ in sd], metric)
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


def load_field_shift(path: str | Path | None = None, profile: str = "standard") -> dict:
    """The record of ``benchmarks/field_shift.py`` (default ``results_dir()/field_shift-<profile>.json``)."""
    path = Path(path) if path is not None else results_dir() / f"field_shift-{profile}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no field-shift ablation; write it with "
                                f"`python benchmarks/field_shift.py --profile {profile}`")
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
