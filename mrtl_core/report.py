"""The results chapter's tables and verdicts, computed from the chapters' records.

Every function takes the dict that :func:`mrtl_core.records.load_records` returns
(``{chapter: {"chapter", "profile", "numbers"}}``) and returns a pandas DataFrame, a list of
:class:`Verdict`, or text. Nothing here types a number: the results chapter only arranges what the
earlier chapters measured, and judges the paper's claims with the one rule of
:class:`mrtl_core.stats.Thresholds` (:func:`mrtl_core.stats.classify`).

A record that is missing raises :class:`MissingRecordError`, whose message names the chapter to
run; :func:`or_notice` turns it into a sentence for the page instead of a traceback. A claim whose
records are missing is judged ``"not tested"``.

Differences are ``[mean, ci_low, ci_high]`` lists, as the chapters record them (95 % t-intervals,
paired over test slices unless the chapter says otherwise).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pandas as pd

from .profiles import PROFILES, Profile, get_profile
from .stats import Thresholds, as_diff, classify, compare_sentence, fmt_ci, fmt_interval, gap_to_recover

__all__ = [
    "CHAPTERS", "VERDICTS", "MissingRecordError", "Verdict",
    "numbers", "missing_chapters", "missing_notice", "profile_mismatch", "or_notice",
    "source_table", "generalization_table", "finetune_table", "beyond_table", "dc_table",
    "claims", "EXTRA_CASE_CLAIMS", "claims_table", "claims_markdown", "profile_table", "profile_changes", "summary_figure",
    "source_sentences", "generalization_sentences", "finetune_sentences", "beyond_sentences",
]

#: Chapters whose records the results chapter reads: ``{record name: (chapter number, notebook)}``.
CHAPTERS: dict[str, tuple[int, str]] = {
    "01_kspace": (1, "notebooks/01_kspace.ipynb"),
    "02_cg_sense": (2, "notebooks/02_cg_sense.ipynb"),
    "03_scanners": (3, "notebooks/03_scanners.ipynb"),
    "04_pretrained_unet": (4, "notebooks/04_pretrained_unet.ipynb"),
    "05_generalization": (5, "notebooks/05_generalization.ipynb"),
    "06_fine_tuning": (6, "notebooks/06_fine_tuning.ipynb"),
    "07_beyond": (7, "notebooks/07_beyond.ipynb"),
}
SOURCE = "04_pretrained_unet"
GENERALIZATION = "05_generalization"
FINETUNE = "06_fine_tuning"
BEYOND = "07_beyond"

#: The four verdicts, best first.
VERDICTS = ("reproduced", "partly", "not reproduced", "not tested")


class MissingRecordError(LookupError):
    """A chapter's record (or a key in it) that a table or verdict needs is not there."""


def _run_hint(chapter: str) -> str:
    if chapter in CHAPTERS:
        num, path = CHAPTERS[chapter]
        return f"run chapter {num} ({path}) first"
    return f"run the chapter that saves {chapter!r} first"


def numbers(records: dict[str, dict], chapter: str) -> dict[str, Any]:
    """The ``numbers`` of one chapter's record; :class:`MissingRecordError` names the chapter to run."""
    if not isinstance(records, dict):
        raise TypeError(f"records must be the dict of load_records(), got {type(records).__name__}")
    rec = records.get(chapter)
    if rec is None and chapter in CHAPTERS:
        # a chapter renamed after this table was written: match by its number prefix ("07_")
        same = [k for k in records if k[:3] == chapter[:3] and k[:2].isdigit()]
        rec = records[same[0]] if len(same) == 1 else None
    if rec is None:
        raise MissingRecordError(f"the record {chapter!r} is missing: {_run_hint(chapter)}")
    if not isinstance(rec, dict) or not isinstance(rec.get("numbers"), dict):
        raise ValueError(f"record {chapter!r} has no 'numbers' dict (keys: {sorted(rec) if isinstance(rec, dict) else rec!r})")
    return rec["numbers"]


def _get(d: dict, chapter: str, *keys: str) -> Any:
    """``d[k0][k1]...`` with a :class:`MissingRecordError` naming the chapter and the key path."""
    cur: Any = d
    for i, k in enumerate(keys):
        if not isinstance(cur, dict) or k not in cur:
            path = "/".join(keys[: i + 1])
            raise MissingRecordError(f"record {chapter!r} has no {path!r}: re-run that chapter ({_run_hint(chapter)})")
        cur = cur[k]
    return cur


def missing_chapters(records: dict[str, dict], chapters: Sequence[str] = tuple(CHAPTERS)) -> list[str]:
    """The chapters among ``chapters`` that have no record (matched by number prefix), in order."""
    present = {k[:3] for k in records if k[:2].isdigit()}
    return [c for c in chapters if c not in records and c[:3] not in present]


def missing_notice(records: dict[str, dict], chapters: Sequence[str] = tuple(CHAPTERS)) -> str:
    """A sentence saying which chapters to run, or ``""`` when every record is there."""
    gone = missing_chapters(records, chapters)
    if not gone:
        return ""
    runs = "; ".join(f"{c}: {_run_hint(c)}" for c in gone)
    return (f"Missing records ({len(gone)} of {len(chapters)}): {runs}. "
            "The tables and verdicts that need them say so below.")


def profile_mismatch(records: dict[str, dict], profile: str) -> dict[str, str]:
    """``{chapter: its profile}`` for every record written with another profile than ``profile``."""
    return {c: r.get("profile") for c, r in records.items() if c in CHAPTERS and r.get("profile") != profile}


def or_notice(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, or the :class:`MissingRecordError` message as a string."""
    try:
        return fn(*args, **kwargs)
    except MissingRecordError as exc:
        return f"Not available: {exc}."


@dataclass
class Verdict:
    """One claim, its verdict, and the cases behind it (one line of numbers each)."""

    key: str
    claim: str
    source: str                     # "paper" (Arshad et al. 2021) or "book"
    rule: str
    verdict: str = "not tested"
    cases: list[dict] = field(default_factory=list)   # {"case", "holds": bool, "evidence": str}
    note: str = ""

    def settle(self) -> "Verdict":
        if not self.cases:
            self.verdict = "not tested"
        else:
            held = sum(bool(c["holds"]) for c in self.cases)
            self.verdict = "reproduced" if held == len(self.cases) else ("partly" if held else "not reproduced")
        return self

    @property
    def evidence(self) -> str:
        if not self.cases:
            return self.note or "no recorded case"
        lines = [f"{c['case']}: {c['evidence']}" for c in self.cases]
        return "; ".join(lines) + (f" ({self.note})" if self.note else "")

    def to_dict(self) -> dict:
        return {"claim": self.claim, "source": self.source, "rule": self.rule, "verdict": self.verdict,
                "cases": self.cases, "note": self.note}


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
def source_table(records: dict[str, dict]) -> pd.DataFrame:
    """Chapter 4 on its own domain: zero-filled, CG-SENSE, pre-trained U-Net; SSIM/PSNR/RMSE (whole and foreground)."""
    num = numbers(records, SOURCE)
    rows = {}
    for label, method in (("zero-filled", "zero-filled"), ("CG-SENSE", "CG-SENSE"), ("pre-trained U-Net", "U-Net")):
        get = lambda metric: _get(num, SOURCE, "scores", method, metric, "mean")  # noqa: E731
        rows[label] = {
            "SSIM": float(get("ssim")), "SSIM 95 % CI": fmt_interval(_get(num, SOURCE, "scores", method, "ssim", "ci")),
            "PSNR (dB)": float(get("psnr")), "RMSE (a.u.)": float(get("rmse")),
            "SSIM (fg)": float(get("ssim_fg")), "PSNR (fg, dB)": float(get("psnr_fg")),
            "RMSE (fg, a.u.)": float(get("rmse_fg")),
        }
    table = pd.DataFrame(rows).T
    table.index.name = f"{num.get('domain', 'source')}, R = {num.get('acceleration', 4)}"
    return table


def generalization_table(records: dict[str, dict], metric: str = "ssim_fg") -> pd.DataFrame:
    """Chapter 5, one row per shift: pre-trained vs target-trained, the drop, and the gain over zero-filling.

    Columns: ``kind``, ``R``, ``pre-trained``, ``target-trained`` (NaN where chapter 5 trained no
    reference), ``pre − target [CI]``, ``drop vs source [CI]`` (paired only for acceleration
    shifts), ``zero-filled``, ``pre − zero-filled [CI]``.
    """
    num = numbers(records, GENERALIZATION)
    conditions = _get(num, GENERALIZATION, "conditions")
    source = num.get("source")
    refs = num.get("reference", {})
    rows = {}
    for name in sorted(conditions, key=_shift_order):
        c = conditions[name]
        if name == source:
            continue
        ref = refs.get(name)
        drop = num.get("drop_vs_source", {}).get(name)
        gain = num.get("unet_minus_zf", {}).get(name)
        rows[name] = {
            "kind": c.get("kind", ""), "R": c.get("acceleration"),
            "pre-trained": float(_get(c, GENERALIZATION, "unet", metric)),
            "target-trained": float(ref[metric]) if ref else float("nan"),
            "pre − target [CI]": fmt_ci(ref["unet_minus_ref"][metric]) if ref else "–",
            "drop vs source [CI]": fmt_ci(drop[metric]) if drop else "–",
            "drop paired": ("yes" if drop.get("paired") else "no (Welch)") if drop else "–",
            "zero-filled": float(_get(c, GENERALIZATION, "zf", metric)),
            "pre − zero-filled [CI]": fmt_ci(gain[metric]) if gain else "–",
        }
    if not rows:
        raise MissingRecordError(f"record {GENERALIZATION!r} lists no shifted condition: {_run_hint(GENERALIZATION)}")
    table = pd.DataFrame(rows).T
    table.index.name = "shift"
    return table


def finetune_table(records: dict[str, dict], n: int | None = None, metric: str = "ssim_fg") -> pd.DataFrame:
    """Chapter 6, one row per shift at ``n`` target slices (default: the chapter's table N).

    Columns: pre-trained, fine-tuned N, scratch N, scratch (full), fine-tuned − pre-trained [CI],
    fine-tuned − scratch [CI], gap closed (share of the pre-trained → scratch-full gap; NaN where
    the chapter found no gap or trained no full reference).
    """
    num = numbers(records, FINETUNE)
    shifts = _get(num, FINETUNE, "shifts")
    n = int(num.get("n_table", 1) if n is None else n)
    key = str(n)
    rows = {}
    for name, s in shifts.items():
        def score(method, sub=None):
            block = s.get(method, {})
            block = block.get(sub, {}) if sub is not None else block
            return float(block[metric]) if metric in block else float("nan")
        g = s.get("gap_closed", {}).get(key)
        rows[name] = {
            "kind": s.get("kind", ""),
            "pre-trained": score("pre-trained"),
            f"fine-tuned N={n}": score("fine-tuned", key),
            f"scratch N={n}": score("from scratch", key),
            "scratch (full)": score("scratch (full)"),
            "fine-tuned − pre [CI]": fmt_ci(s.get("diff_ft_minus_pre", {}).get(key, {}).get(metric)),
            "fine-tuned − scratch N [CI]": fmt_ci(s.get("diff_ft_minus_scratch", {}).get(key, {}).get(metric)),
            "gap closed": float(g) if g is not None else float("nan"),
        }
    if not rows:
        raise MissingRecordError(f"record {FINETUNE!r} lists no shift: {_run_hint(FINETUNE)}")
    table = pd.DataFrame(rows).T
    table.index.name = f"shift ({metric}, N = {n})"
    return table


def beyond_table(records: dict[str, dict]) -> pd.DataFrame:
    """Chapter 7's strategies and forgetting, one row per fine-tuning variant on its target.

    Columns: share of trainable weights, target foreground SSIM and its paired difference to the
    pre-trained network, source foreground SSIM and its paired difference to the pre-trained
    network (negative: forgetting). The rehearsal row is end-to-end fine-tuning with source slices mixed in.
    """
    num = numbers(records, BEYOND)
    target = _get(num, BEYOND, "strategy_ssim_fg")
    source = _get(num, BEYOND, "source_ssim_fg")
    diffs = num.get("strategy_diff_vs_pretrained", {})
    forget = num.get("forgetting_diff_ssim_fg", {})
    share = num.get("strategy_trainable_share", {})
    rows = {}
    for s in target:
        rows[s] = {"trainable share": float(share.get(s, 0.0 if s == "pre-trained" else float("nan"))),
                   "target SSIM (fg)": float(target[s]),
                   "target − pre-trained [CI]": fmt_ci(diffs.get(s)),
                   "source SSIM (fg)": float(source.get(s, float("nan"))),
                   "source − pre-trained [CI]": fmt_ci(forget.get(s))}
    reh = num.get("rehearsal")
    if reh:
        rows[f"end-to-end + {num.get('rehearsal_slices', '?')} source slices (rehearsal)"] = {
            "trainable share": float(share.get("end-to-end", float("nan"))),
            "target SSIM (fg)": float(reh["target_ssim_fg"]), "target − pre-trained [CI]": "–",
            "source SSIM (fg)": float(reh["source_ssim_fg"]), "source − pre-trained [CI]": fmt_ci(forget.get("rehearsal"))}
    table = pd.DataFrame(rows).T
    table.index.name = f"fine-tuned on {num.get('target', 'target')}, N = {num.get('n_slices', '?')}"
    return table


def dc_table(records: dict[str, dict]) -> pd.DataFrame:
    """Chapter 7's data-consistency rows: domain, network, λ, metric, without / with DC, paired Δ [CI]."""
    num = numbers(records, BEYOND)
    rows = []
    for r in _get(num, BEYOND, "dc"):
        rows.append({"domain": r["domain"], "network": r["network"], "λ": format(float(r["λ"]), "g"), "metric": r["metric"],
                     "without DC": float(r["without DC"]), "with DC": float(r["with DC"]), "Δ [CI]": fmt_ci(r["_d"])})
    if not rows:
        raise MissingRecordError(f"record {BEYOND!r} has no data-consistency rows: {_run_hint(BEYOND)}")
    return pd.DataFrame(rows).set_index(["domain", "network", "λ", "metric"])


# --------------------------------------------------------------------------------------------
# the paper's claims, judged
# --------------------------------------------------------------------------------------------
CLAIMS: dict[str, tuple[str, str]] = {
    "source_beats_zero_filled": (
        "paper",
        "On its own domain (1.5 T brain, R = 4) the U-Net reconstructs clearly better than the zero-filled image.",
    ),
    "generalises_poorly": (
        "paper",
        "A U-Net pre-trained on 1.5 T brain at R = 4 generalises poorly to 3 T brain, to knee, and to other "
        "accelerations: a network trained for the target does better.",
    ),
    "finetune_improves": (
        "paper",
        "End-to-end fine-tuning on a few target images improves the pre-trained network on each target.",
    ),
    "finetune_close_to_full": (
        "paper",
        "Fine-tuning with a few target images recovers performance close to training from scratch on a large "
        "target data set.",
    ),
    "finetune_beats_scratch_same_n": (
        "paper",
        "Fine-tuning is better than training from scratch on the same few target images.",
    ),
}


def _rule_texts(t: Thresholds) -> dict[str, str]:
    e, c, lab = f"{t.min_effect:g}", f"{t.close:g}", t.label
    return {
        "source_beats_zero_filled": f"chapter 4: U-Net − zero-filled ({lab}, paired over test slices) is better by ≥ {e} with a CI above 0.",
        "generalises_poorly": (f"per shift: the pre-trained U-Net is worse by ≥ {e} ({lab}, paired, CI below 0) than a network "
                               "trained for the target: chapter 5's U-Net trained from scratch on the whole target set "
                               "where there is one, otherwise chapter 6's network fine-tuned on the most target slices."),
        "finetune_improves": f"per shift, chapter 6 at its table N: fine-tuned − pre-trained ({lab}, paired) is better by ≥ {e} with a CI above 0.",
        "finetune_close_to_full": (f"per shift where the network trained from scratch on the whole target training set beats the "
                                   f"pre-trained one by ≥ {e} (a gap to recover), chapter 6 at its table N: the fine-tuned mean "
                                   f"{lab} is at most {c} below that full-set network."),
        "finetune_beats_scratch_same_n": (f"per shift and per recorded N, chapter 6: fine-tuned − from scratch on the same N "
                                          f"slices ({lab}, paired) is better by ≥ {e} with a CI above 0."),
    }


def _new(key: str, t: Thresholds) -> Verdict:
    source, claim = CLAIMS[key]
    return Verdict(key=key, claim=claim, source=source, rule=_rule_texts(t)[key])


def _judge_source(records, t) -> Verdict:
    v = _new("source_beats_zero_filled", t)
    try:
        num = numbers(records, SOURCE)
        d = _get(num, SOURCE, "differences", "U-Net", "zero-filled", t.metric)
    except MissingRecordError as exc:
        v.note = str(exc)
        return v.settle()
    v.cases.append({"case": f"{num.get('domain', 'source')} R{num.get('acceleration', 4)}",
                    "holds": classify(d, t) == "better", "diff": list(d),
                    "evidence": f"U-Net − zero-filled {fmt_ci(d)}"})
    return v.settle()


def _judge_generalization(records, t, extra: Sequence[dict] = ()) -> Verdict:
    v = _new("generalises_poorly", t)
    notes = []
    refs: dict[str, tuple[list, str]] = {}
    try:
        gen = numbers(records, GENERALIZATION)
        for name, ref in gen.get("reference", {}).items():
            refs[name] = (_get(ref, GENERALIZATION, "unet_minus_ref", t.metric), "vs trained from scratch on the target set")
    except MissingRecordError as exc:
        notes.append(str(exc))
    try:
        ft = numbers(records, FINETUNE)
        for name, s in ft.get("shifts", {}).items():
            if name in refs:
                continue
            diffs = s.get("diff_ft_minus_pre", {})
            if not diffs:
                continue
            n = max(diffs, key=int)
            m, lo, hi = as_diff(diffs[n][t.metric], "diff_ft_minus_pre")
            refs[name] = ([-m, -hi, -lo], f"vs fine-tuned on N = {n}")
    except MissingRecordError as exc:
        notes.append(str(exc))
    try:
        untested = [c for c in numbers(records, GENERALIZATION).get("conditions", {})
                    if c not in refs and c != numbers(records, GENERALIZATION).get("source")]
    except MissingRecordError:
        untested = []
    if untested:
        notes.append("no target-trained network recorded for " + ", ".join(sorted(untested, key=_shift_order)))
    for name in sorted(refs, key=_shift_order):
        d, how = refs[name]
        v.cases.append({"case": name, "holds": classify(d, t) == "worse", "diff": list(d),
                        "evidence": f"pre-trained − target-trained {fmt_ci(d)} ({how})"})
    for case in extra:   # a benchmark's record of the same profile (the clinical sites)
        d = case["diff"].get(t.metric)
        if d is None:
            notes.append(f"{case['case']}: no {t.label} recorded")
            continue
        v.cases.append({"case": case["case"], "holds": classify(d, t) == "worse", "diff": list(d),
                        "evidence": f"pre-trained − target-trained {fmt_ci(d)} ({case['how']})"})
    v.note = "; ".join(notes)
    return v.settle()


def _shift_order(name: str) -> tuple:
    """Field, then anatomy, then acceleration shifts by R (``"brain-1.5T R10"`` after ``R8``)."""
    kind = 0 if "3T" in name else (1 if "knee" in name else 2)
    try:
        r = float(name.rsplit("R", 1)[1])
    except (IndexError, ValueError):
        r = 0.0
    return (kind, r, name)


def _extra_finetune_cases(v: Verdict, key: str, t: Thresholds, extra: Sequence[dict]) -> list[str]:
    """Add a benchmark's cases (``fine-tuned − reference``, ``diff`` by metric) to ``v`` by the claim's rule;
    the notes for cases without the verdict's metric."""
    notes = []
    for case in extra:
        d = case["diff"].get(t.metric)
        if d is None:
            notes.append(f"{case['case']}: no {t.label} recorded")
            continue
        m = as_diff(d, "diff")[0]
        holds = m >= -t.close if key == "finetune_close_to_full" else classify(d, t) == "better"
        v.cases.append({"case": case["case"], "holds": holds, "diff": list(d) if key != "finetune_close_to_full" else m,
                        "evidence": f"fine-tuned − {case['reference']} {fmt_ci(d)} ({case['how']})"})
    return notes


def _judge_finetune(records, t, key: str, extra: Sequence[dict] = ()) -> Verdict:
    v = _new(key, t)
    try:
        ft = numbers(records, FINETUNE)
        shifts = _get(ft, FINETUNE, "shifts")
    except MissingRecordError as exc:
        v.note = "; ".join([str(exc), *_extra_finetune_cases(v, key, t, extra)])
        return v.settle()
    n_tab = str(ft.get("n_table"))
    skipped, no_gap = [], []
    for name in sorted(shifts, key=_shift_order):
        s = shifts[name]
        if key == "finetune_improves":
            d = s.get("diff_ft_minus_pre", {}).get(n_tab, {}).get(t.metric)
            if d is None:
                skipped.append(name)
                continue
            v.cases.append({"case": f"{name}, N = {n_tab}", "holds": classify(d, t) == "better", "diff": list(d),
                            "evidence": f"fine-tuned − pre-trained {fmt_ci(d)}"})
        elif key == "finetune_close_to_full":
            full = s.get("scratch (full)", {}).get(t.metric)
            ftn = s.get("fine-tuned", {}).get(n_tab, {}).get(t.metric)
            if full is None or ftn is None:
                skipped.append(name)
                continue
            pre = s.get("pre-trained", {}).get(t.metric)
            if pre is not None and not gap_to_recover(pre, full, t):
                # nothing to recover: the pre-trained network already matches the full-set one
                no_gap.append(f"{name} (pre-trained {float(pre):.3f}, full-set scratch {float(full):.3f})")
                continue
            diff = float(ftn) - float(full)
            g = s.get("gap_closed", {}).get(n_tab)
            share = f", {100 * float(g):.0f} % of the gap closed" if g is not None else ""
            v.cases.append({"case": f"{name}, N = {n_tab}", "holds": diff >= -t.close, "diff": diff,
                            "evidence": f"fine-tuned {float(ftn):.3f} vs full-set scratch {float(full):.3f} ({diff:+.3f}{share})"})
        elif key == "finetune_beats_scratch_same_n":
            diffs = s.get("diff_ft_minus_scratch", {})
            if not diffs:
                skipped.append(name)
            for n in sorted(diffs, key=int):
                d = diffs[n].get(t.metric)
                if d is None:
                    continue
                v.cases.append({"case": f"{name}, N = {n}", "holds": classify(d, t) == "better", "diff": list(d),
                                "evidence": f"fine-tuned − scratch {fmt_ci(d)}"})
    notes = []
    if skipped:
        notes.append("not recorded for " + ", ".join(skipped))
    if no_gap:
        notes.append("no gap to recover (the full-set network is not better than the pre-trained one by the "
                     f"minimum effect) for " + ", ".join(no_gap))
    notes += _extra_finetune_cases(v, key, t, extra)
    v.note = "; ".join(notes)
    return v.settle()


def claims(records: dict[str, dict], thresholds: Thresholds = Thresholds(),
           extra_cases: dict[str, Sequence[dict]] | None = None) -> list[Verdict]:
    """Every claim of :data:`CLAIMS`, judged from the records with ``thresholds``; never raises for missing records.

    ``extra_cases`` adds cases a benchmark recorded, by claim key, each ``{"case": name, "how": what it
    compares, "diff": {metric: [mean, low, high]}}``, judged by the same rule as the chapters' cases:
    for ``"generalises_poorly"`` the pre-trained network minus its target-trained twin; for
    ``"finetune_close_to_full"`` and ``"finetune_beats_scratch_same_n"`` a fine-tuned network minus the
    full-set network or the from-scratch one on the same N (named by the case's ``"reference"``), e.g.
    :func:`mrtl_core.grid.recipe_claim_cases` of the recipes benchmark.
    """
    extra_cases = dict(extra_cases or {})
    unknown = set(extra_cases) - set(EXTRA_CASE_CLAIMS)
    if unknown:
        raise ValueError(f"extra_cases: only {', '.join(EXTRA_CASE_CLAIMS)} take extra cases, got {sorted(unknown)}")
    return [
        _judge_source(records, thresholds),
        _judge_generalization(records, thresholds, extra_cases.get("generalises_poorly", ())),
        _judge_finetune(records, thresholds, "finetune_improves"),
        _judge_finetune(records, thresholds, "finetune_close_to_full", extra_cases.get("finetune_close_to_full", ())),
        _judge_finetune(records, thresholds, "finetune_beats_scratch_same_n",
                        extra_cases.get("finetune_beats_scratch_same_n", ())),
    ]


#: the claims that take cases recorded by a benchmark (:func:`claims`'s ``extra_cases``)
EXTRA_CASE_CLAIMS = ("generalises_poorly", "finetune_close_to_full", "finetune_beats_scratch_same_n")


def claims_table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """One row per claim: the claim, its verdict, and the numbers behind it."""
    table = pd.DataFrame([{"claim": v.claim, "verdict": v.verdict, "numbers": v.evidence} for v in verdicts],
                         index=[v.key for v in verdicts])
    table.index.name = "claim"
    return table


def claims_markdown(verdicts: Sequence[Verdict]) -> str:
    """A Markdown list: each claim in words, **verdict**, the rule, and one line per case."""
    out = []
    for v in verdicts:
        out.append(f"* *{v.claim}* — **{v.verdict}**.  \n  Rule: {v.rule}")
        for c in v.cases:
            mark = "✓" if c["holds"] else "✗"
            out.append(f"  * {mark} {c['case']}: {c['evidence']}")
        if v.note:
            out.append(f"  * {v.note}")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# sentences for the text (glued, so the page never states what its records contradict)
# --------------------------------------------------------------------------------------------
def source_sentences(records: dict[str, dict], thresholds: Thresholds = Thresholds()) -> str:
    """Chapter 4 in words: the U-Net against zero-filling and CG-SENSE on the source test slices."""
    num = numbers(records, SOURCE)
    m = thresholds.metric
    parts = [compare_sentence(_get(num, SOURCE, "differences", "U-Net", b, m), a, name, thresholds)
             for a, b, name in (("On the source test slices the pre-trained U-Net", "zero-filled", "zero-filling"),
                                ("it", "CG-SENSE", "CG-SENSE"))]
    return "; ".join(parts) + "."


def generalization_sentences(records: dict[str, dict], thresholds: Thresholds = Thresholds()) -> str:
    """Chapter 5 in words: per shift, the pre-trained U-Net against the target-trained one (or the paired drop)."""
    num = numbers(records, GENERALIZATION)
    m = thresholds.metric
    out = []
    for name in sorted(_get(num, GENERALIZATION, "conditions"), key=_shift_order):
        if name == num.get("source"):
            continue
        ref = num.get("reference", {}).get(name)
        drop = num.get("drop_vs_source", {}).get(name)
        if ref is not None:
            out.append("* " + compare_sentence(ref["unet_minus_ref"][m], f"On {name} the pre-trained U-Net",
                                               "the U-Net trained on that domain", thresholds) + ".")
        elif drop is not None and drop.get("paired"):
            out.append("* " + compare_sentence(drop[m], f"On {name} (the same slices, another mask) the pre-trained U-Net",
                                               "itself at the training acceleration", thresholds)
                       + _acceleration_reading(num, name, drop, thresholds))
    return "\n".join(out)


def _acceleration_reading(num: dict, name: str, drop: dict, thresholds: Thresholds) -> str:
    """What a paired drop at another acceleration can and cannot say, with no network trained at that R.
    On an easier problem (lower R) any metric that falls is the network's mismatch, and is named."""
    r = num.get("conditions", {}).get(name, {}).get("acceleration")
    r0 = num.get("conditions", {}).get(num.get("source"), {}).get("acceleration", 4)
    verdict = classify(drop[thresholds.metric], thresholds)
    if r is not None and float(r) < float(r0):
        easier = f"; R = {r:g} keeps more k-space than R = {r0:g}, an easier problem, so "
        if verdict == "worse":
            return easier + "a lower score here is the network's mismatch with the sampling it was not trained for, not difficulty."
        falls = [m for m in ("ssim", "ssim_fg", "psnr", "psnr_fg") if m != thresholds.metric and m in drop
                 and classify(drop[m], thresholds.on(m)) == "worse"]
        other = "".join(f" Its {thresholds.on(m).label} falls, though ({fmt_ci(drop[m], thresholds.on(m).digits, thresholds.on(m).unit)}): "
                        "on an easier problem, that is the network's mismatch with the sampling." for m in falls[:1])
        return (easier + "the data alone would raise the score, and how much mismatch that hides is not measured: no "
                "network trained at this acceleration was recorded." + other)
    return ("; no network trained at this acceleration was recorded, so this mixes the harder problem with the "
            "network's mismatch.")


def finetune_sentences(records: dict[str, dict], thresholds: Thresholds = Thresholds()) -> str:
    """Chapter 6 in words: per shift at the table N, fine-tuned against pre-trained and against scratch."""
    num = numbers(records, FINETUNE)
    n = str(num.get("n_table"))
    m = thresholds.metric
    out = []
    for name in sorted(_get(num, FINETUNE, "shifts"), key=_shift_order):
        s = num["shifts"][name]
        parts = []
        if n in s.get("diff_ft_minus_pre", {}):
            parts.append(compare_sentence(s["diff_ft_minus_pre"][n][m], f"On {name} the network fine-tuned on N = {n} slices",
                                          "the pre-trained one", thresholds))
        if n in s.get("diff_ft_minus_scratch", {}):
            parts.append(compare_sentence(s["diff_ft_minus_scratch"][n][m], "it", "a U-Net trained from scratch on the same slices",
                                          thresholds))
        if parts:
            out.append("* " + "; ".join(parts) + ".")
    return "\n".join(out)


def beyond_sentences(records: dict[str, dict], thresholds: Thresholds = Thresholds()) -> str:
    """Chapter 7 in words, each comparison judged by the same rule as the paper's claims (foreground SSIM)."""
    num = numbers(records, BEYOND)
    t = thresholds.on("ssim_fg")
    target, n = num.get("target", "the target"), num.get("n_slices", "N")
    out = []
    for s, d in num.get("strategy_diff_vs_pretrained", {}).items():
        out.append(compare_sentence(d, f"On {target}, fine-tuning ({s}) on {n} slices", "the pre-trained network", t))
    forget = num.get("forgetting_diff_ssim_fg", {})
    if "end-to-end" in forget:
        out.append(compare_sentence(forget["end-to-end"], f"Back on {num.get('source', 'the source domain')}, the "
                                    "end-to-end fine-tuned network", "the pre-trained one", t)
                   + (" (forgetting)" if classify(forget["end-to-end"], t) == "worse" else ""))
    reh = num.get("rehearsal", {})
    if "diff_vs_end_to_end_source" in reh:
        out.append(compare_sentence(reh["diff_vs_end_to_end_source"], "With rehearsal, the source score",
                                    "plain end-to-end fine-tuning's", t))
    if "diff_vs_end_to_end_target" in reh:
        out.append(compare_sentence(reh["diff_vs_end_to_end_target"], "With rehearsal, the target score",
                                    "plain end-to-end fine-tuning's", t))
    for r in num.get("dc", []):
        if r.get("metric") == "ssim_fg":
            out.append(compare_sentence(r["_d"], f"On {r['domain']}, the {r['network']} network with data consistency "
                                        f"(λ = {r['λ']:g})", "without", t))
    if not out:
        raise MissingRecordError(f"record {BEYOND!r} holds none of the comparisons this page reads: {_run_hint(BEYOND)}")
    return "\n".join(f"* {line}." for line in out)


# --------------------------------------------------------------------------------------------
# profiles
# --------------------------------------------------------------------------------------------
_PROFILE_ROWS = {
    "image size (pixels)": lambda p: f"{p.image_size} × {p.image_size}",
    "source training slices": lambda p: p.source_train_subjects * p.slices_per_subject,
    "target training slices (full set)": lambda p: p.target_train_subjects * p.slices_per_subject,
    "test slices per domain": lambda p: p.test_subjects * p.slices_per_subject,
    "U-Net channels / pooling levels": lambda p: f"{p.chans} / {p.num_pool_layers}",
    "pre-training epochs": lambda p: p.pretrain_epochs,
    "fine-tuning N": lambda p: ", ".join(str(n) for n in p.finetune_ns),
    "fine-tuning steps (max)": lambda p: p.finetune_steps,
    "seeds": lambda p: len(p.seeds),
    "accelerations": lambda p: ", ".join(f"{r:g}" for r in p.accelerations),
    "CG-SENSE iterations": lambda p: p.cg_iters,
}


def profile_table(names: Sequence[str] = tuple(PROFILES)) -> pd.DataFrame:
    """The sizes that matter for the findings, one column per profile."""
    profiles = [get_profile(n) for n in names]
    table = pd.DataFrame({p.name: {k: str(f(p)) for k, f in _PROFILE_ROWS.items()} for p in profiles})
    table.index.name = "setting"
    return table


def profile_changes(current: str | Profile, other: str | Profile) -> list[str]:
    """Sentences saying how ``other`` differs from ``current`` in what the findings depend on."""
    a, b = get_profile(current), get_profile(other)
    out = []
    for label, f in _PROFILE_ROWS.items():
        x, y = f(a), f(b)
        if x != y:
            out.append(f"{label}: {x} → {y}")
    if len(b.seeds) > 1 and len(a.seeds) == 1:
        out.append(f"with {len(b.seeds)} seeds, the fine-tuning curves get confidence intervals over training runs, "
                   "not only over test slices")
    return out


# --------------------------------------------------------------------------------------------
# figure
# --------------------------------------------------------------------------------------------
def summary_figure(records: dict[str, dict], metric: str = "ssim_fg", n: int | None = None):
    """Three panels of ``metric``: the source domain (chapter 4), each shift pre-trained vs
    target-trained (chapter 5), and fine-tuning at ``n`` (chapter 6). A panel whose record is
    missing says which chapter to run. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    label = {"ssim": "SSIM", "ssim_fg": "SSIM (foreground)"}.get(metric, metric)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1, 1.6, 2]})

    def missing(ax, exc):
        ax.text(0.5, 0.5, str(exc).replace(": ", ":\n", 1), ha="center", va="center", wrap=True,
                fontsize=9, transform=ax.transAxes)
        ax.set_xticks([]); ax.set_yticks([])

    col = {"ssim": "SSIM", "ssim_fg": "SSIM (fg)"}.get(metric)
    ax = axes[0]
    try:
        t = source_table(records)
        if col is None:
            raise ValueError(f"summary_figure supports metric 'ssim' or 'ssim_fg', got {metric!r}")
        ax.bar(range(len(t)), t[col].astype(float), color=["C7", "C1", "C0"])
        ax.set_xticks(range(len(t)), [s.replace("pre-trained ", "") for s in t.index])
        ax.set_title(f"source domain ({t.index.name})")
        ax.set_ylabel(label)
    except MissingRecordError as exc:
        missing(ax, exc)
        ax.set_title("source domain")

    def grouped_bars(ax, table, columns, title):
        """One group of bars per shift (rows of ``table``), one bar per ``(column, colour, legend)``."""
        x, width = np.arange(len(table)), 0.8 / len(columns)
        for i, (column, colour, legend) in enumerate(columns):
            ax.bar(x + (i - (len(columns) - 1) / 2) * width, table[column].astype(float), width, color=colour, label=legend)
        ax.set_xticks(x, [s.replace(" R", "\nR") for s in table.index])
        ax.set_title(title)
        ax.set_ylabel(label)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)

    try:
        grouped_bars(axes[1], generalization_table(records, metric),
                     [("zero-filled", "C7", "zero-filled"), ("pre-trained", "C0", "pre-trained U-Net"),
                      ("target-trained", "C2", "trained on the target")], "generalization (chapter 5)")
    except MissingRecordError as exc:
        missing(axes[1], exc)
        axes[1].set_title("generalization")
    try:
        t = finetune_table(records, n, metric)
        t = t.loc[sorted(t.index, key=_shift_order)]
        n_used = [c for c in t.columns if c.startswith("fine-tuned N=")][0].split("=")[1]
        grouped_bars(axes[2], t, [("pre-trained", "C0", "pre-trained"), (f"fine-tuned N={n_used}", "C3", f"fine-tuned, N = {n_used}"),
                                  (f"scratch N={n_used}", "C9", f"from scratch, N = {n_used}"),
                                  ("scratch (full)", "C2", "from scratch, full set")], "fine-tuning (chapter 6)")
    except MissingRecordError as exc:
        missing(axes[2], exc)
        axes[2].set_title("fine-tuning")
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Mean {label} over the test slices (bars missing where a method was not run)")
    fig.tight_layout()
    return fig
