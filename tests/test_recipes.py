"""The fine-tuning recipes (``experiment.RECIPES``) and their benchmark's arithmetic.

The recipes' training code is tested in ``test_train.py``; here: that each named recipe builds the
configuration its documentation states, that "baseline" is the book's own configuration (so its
cache key and every recorded run are unchanged), and that ``benchmarks/finetune_recipes.py`` computes
the share of the gap and the paired difference as written, on records this test makes.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from mrtl_core import experiment as ex, grid, report
from mrtl_core.stats import Thresholds
from mrtl_core.profiles import get_profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import finetune_recipes as fr  # noqa: E402

STANDARD = get_profile("standard")


def test_baseline_is_the_books_config_and_keeps_its_cache_key():
    for n in (1, 5, 50):
        cfg, strategy = ex.recipe_config(STANDARD, n, 0, "baseline")
        assert strategy is None and cfg == ex.finetune_config(STANDARD, n, 0)
        key = ex.model_key(STANDARD, "finetune", "knee-1.5T", 4, cfg)
        assert key == ex.model_key(STANDARD, "finetune", "knee-1.5T", 4, ex.finetune_config(STANDARD, n, 0))
        assert "schedule" not in key["train"] and "l2sp" not in key["train"]   # the keys cached before stay


@pytest.mark.parametrize("n", [1, 5, 20, 50])
def test_a_scaled_budget_is_epochs_of_the_n_slices(n):
    cfg, _ = ex.recipe_config(STANDARD, n, 0, "scaled")
    batch = min(STANDARD.finetune_batch_size, n)
    epoch = math.ceil(n / batch)
    assert cfg.max_steps == max(STANDARD.finetune_steps, ex.RECIPE_EPOCHS * epoch)
    assert cfg.steps_per_epoch == max(STANDARD.finetune_eval_every, epoch)   # a validation round is an epoch at least
    assert cfg.patience == STANDARD.finetune_patience and cfg.validate_start
    if n == 50:   # the book's cap is under 6 epochs there; the scaled budget is RECIPE_EPOCHS
        assert STANDARD.finetune_steps / epoch < 6 and cfg.max_steps / epoch == ex.RECIPE_EPOCHS


def test_each_recipe_sets_what_it_names():
    cos, _ = ex.recipe_config(STANDARD, 50, 0, "warmup-cosine")
    assert cos.schedule == "warmup-cosine" and cos.warmup_steps == round(0.1 * cos.max_steps)
    assert ex.recipe_config(STANDARD, 5, 0, "layer-lr")[0].layer_lr_decay == 0.5
    assert ex.recipe_config(STANDARD, 5, 0, "l2sp")[0].l2sp == 0.01
    assert ex.recipe_config(STANDARD, 5, 0, "lp-ft")[1] == "lp-ft"
    long, _ = ex.recipe_config(STANDARD, 5, 0, "long")
    assert long == ex.finetune_config(STANDARD, 5, 0, max_steps=ex.LONG_BUDGET * STANDARD.finetune_steps)
    flips, _ = ex.recipe_config(STANDARD, 10, 0, "flips")
    open_, _ = ex.recipe_config(STANDARD, 10, 0, "flips-open")   # flips with only the cap changed
    assert flips.augment == open_.augment == "flips" and open_.max_steps == ex.OPEN_BUDGET * STANDARD.finetune_steps
    assert {k: v for k, v in open_.to_dict().items() if k != "max_steps"} == \
        {k: v for k, v in flips.to_dict().items() if k != "max_steps"}
    assert ex.RECIPE_PEERS["flips-open"] == "flips"
    with pytest.raises(ValueError, match="recipe must be one of"):
        ex.recipe_config(STANDARD, 5, 0, "adamw")
    with pytest.raises(ValueError, match="adapts pre-trained weights"):
        ex.finetune_run("ci", "knee-1.5T", 1, 0, from_scratch=True, recipe="l2sp")


def _entry(values, subjects, **extra):
    values = np.asarray(values, float)
    return {**extra, "summary": {"ssim_fg": {"mean": float(values.mean())}}, "per_slice": {"ssim_fg": values.tolist()},
            "subjects": [f"s{i}" for i in range(max(subjects) + 1)], "slice_subject": list(subjects)}


def test_the_recipe_table_computes_share_and_paired_difference():
    rng = np.random.default_rng(0)
    subjects = np.repeat(np.arange(4), 3)                 # 4 test subjects, 3 slices each
    pre = rng.uniform(0.5, 0.6, 12)
    twin = pre + 0.10
    results = {"_meta": {}, "pre-trained": _entry(pre, subjects), "twin": _entry(twin, subjects)}
    base, better = {}, {}
    for seed in (0, 1, 2):
        base[seed] = pre + 0.05 + 0.01 * rng.standard_normal(12)
        better[seed] = base[seed] + 0.02 + 0.005 * rng.standard_normal(12)
        results[f"baseline | N=5 | seed={seed}"] = _entry(base[seed], subjects, method="baseline", n=5, seed=seed, at_cap=True, steps=70)
        results[f"l2sp | N=5 | seed={seed}"] = _entry(better[seed], subjects, method="l2sp", n=5, seed=seed, at_cap=False, steps=70)
    rows = {r["recipe"]: r for r in grid.recipe_rows(results)}
    gap = twin.mean() - pre.mean()
    shares = [(better[s].mean() - pre.mean()) / gap for s in (0, 1, 2)]
    assert rows["l2sp"]["share_closed"] == pytest.approx(np.mean(shares))
    assert rows["l2sp"]["share_range"] == pytest.approx([min(shares), max(shares)])
    assert rows["baseline"]["at_cap"] == 3 and rows["l2sp"]["at_cap"] == 0
    # the reference: seed-averaged slice differences, a mean per subject, a t-interval over the 4 subjects
    d = np.mean([better[s] - base[s] for s in (0, 1, 2)], axis=0)
    per_subject = np.array([d[subjects == k].mean() for k in range(4)])
    lo, hi = scipy.stats.t.interval(0.95, 3, loc=per_subject.mean(), scale=scipy.stats.sem(per_subject))
    assert rows["l2sp"]["vs_baseline"] == pytest.approx([per_subject.mean(), lo, hi])
    assert "vs_baseline" not in rows["baseline"]
    table = grid.recipe_table(results)
    assert table.loc[("l2sp", 5), "best round = last"] == "0/3" and table.loc[("baseline", 5), "vs baseline [CI]"] == "–"
    assert "vs its peer [CI]" not in table.columns                 # no recipe here has a peer
    assert "| l2sp | 5 | 3 |" in fr.report({**results, "_meta": {"target": "knee-1.5T", "acceleration": 4.0,
                                                                "profile": {"name": "test"}, "cpu": "cpu",
                                                                "torch": "t", "threads": 1}})


def test_the_recipe_sentence_names_the_best_recipe_keeps_long_apart_and_states_the_cap():
    subjects = np.repeat(np.arange(4), 3)
    pre, offsets = np.linspace(0.50, 0.56, 12), np.tile([0.0, 0.001, -0.001], 4)
    meta = {"target": "knee-1.5T", "acceleration": 4.0}
    results = {"_meta": meta, "pre-trained": _entry(pre, subjects), "twin": _entry(pre + 0.10, subjects)}
    for seed in (0, 1, 2):   # baseline closes 50 %, l2sp 52 % (equivalent), long 80 % (better)
        for method, gain, cap in (("baseline", 0.050, True), ("l2sp", 0.052, True), ("long", 0.080, seed == 0)):
            results[f"{method} | N=5 | seed={seed}"] = _entry(pre + gain + offsets * (seed + 1), subjects, method=method,
                                                              n=5, seed=seed, at_cap=cap, steps=70)
    text = grid.recipe_sentence(results, long_budget=4)
    assert text.startswith("On knee-1.5T at R = 4, at N ≤ 10 the best is *l2sp* (N = 5), closing 52 % of the gap")
    assert "long*" not in text                                     # a diagnostic, never the best
    assert "with 4 times the baseline's steps at N = 5, fine-tuning closes 80 %" in text
    assert "1 of its 3 runs still had their best round at the last" in text
    assert "3 of the baseline's 3 runs had their best round at their last" in text
    assert "over 4 test subjects (12 slices)" in text and text.endswith(".")
    only = {k: v for k, v in results.items() if not k.startswith("l2sp")}   # a budget run: baseline and long
    assert "at N ≤ 10 only the baseline ran; it (N = 5) closes 50 % of the gap" in grid.recipe_sentence(only, long_budget=4)
    worse = {k: (v if not k.startswith("l2sp") else {**v, "per_slice": {"ssim_fg": (np.array(v["per_slice"]["ssim_fg"]) - 0.01).tolist()},
                                                      "summary": {"ssim_fg": {"mean": v["summary"]["ssim_fg"]["mean"] - 0.01}}})
             for k, v in results.items()}                           # l2sp now closes 42 %: the baseline is best
    assert "at N ≤ 10 no recipe beats the baseline, which (N = 5) closes 50 % of the gap" in grid.recipe_sentence(worse)



def test_a_recipe_is_also_compared_with_its_one_setting_peer():
    subjects = np.repeat(np.arange(4), 3)
    pre, offsets = np.linspace(0.50, 0.56, 12), np.tile([0.0, 0.004, -0.004], 4)
    results = {"_meta": {"target": "knee-1.5T", "acceleration": 4.0, "peers": {"flips": "long"}},
               "pre-trained": _entry(pre, subjects), "twin": _entry(pre + 0.10, subjects)}
    for seed in (0, 1, 2):   # baseline 50 %, long 52 %, flips 70 %: flips - long = +0.018 on every slice
        for method, gain in (("baseline", 0.050), ("long", 0.052), ("flips", 0.070)):
            results[f"{method} | N=5 | seed={seed}"] = _entry(pre + gain + offsets * (seed + 1), subjects, method=method,
                                                              n=5, seed=seed, at_cap=False, steps=70)
    rows = {r["recipe"]: r for r in grid.recipe_rows(results)}
    assert rows["flips"]["peer"] == "long" and "vs_peer" not in rows["long"] and "vs_peer" not in rows["baseline"]
    np.testing.assert_allclose(rows["flips"]["vs_peer"][0], 0.018, atol=1e-12)
    np.testing.assert_allclose(rows["flips"]["vs_baseline"][0], 0.020, atol=1e-12)
    text = grid.recipe_sentence(results, long_budget=4)
    assert "against *long* (one setting apart) at N = 5, *flips* is better than *long* (foreground SSIM +0.018" in text
    table = grid.recipe_table(results)
    assert table.loc[("flips", 5), "vs its peer [CI]"].startswith("long: +0.0180") and table.loc[("long", 5), "vs its peer [CI]"] == "–"
    del results["long | N=5 | seed=2"]                              # a peer missing for one seed: no comparison
    assert "vs_peer" not in {r["recipe"]: r for r in grid.recipe_rows(results)}["flips"]


TINY = get_profile("ci").replace(
    name="tiny-within-n", image_size=32, slices_per_subject=2, source_train_subjects=2, target_train_subjects=4,
    val_subjects=1, test_subjects=1, chans=4, num_pool_layers=2, pretrain_epochs=1, batch_size=4, finetune_steps=6,
    finetune_eval_every=2,
)


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MRTL_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path / "cache"


def test_within_n_touches_only_the_n_slices(cache_dir):
    chosen = ex.target_slices(TINY, "knee-1.5T", 6, 1).indices
    train_set, val_set = ex.within_n_split(TINY, "knee-1.5T", 6, 1)
    k = max(1, round(ex.WITHIN_N_FRACTION * 6))
    assert len(val_set) == k and len(train_set) == 6 - k
    assert set(train_set.indices) | set(val_set.indices) == set(chosen)
    assert not set(train_set.indices) & set(val_set.indices)
    assert val_set.dataset.seed_masks and not train_set.dataset.seed_masks   # fixed masks to validate on
    assert ex.within_n_split(TINY, "knee-1.5T", 6, 1)[1].indices == val_set.indices   # the seed decides
    small_train, small_val = ex.within_n_split(TINY, "knee-1.5T", ex.WITHIN_N_MIN - 1, 1)
    assert small_val is None and len(small_train) == ex.WITHIN_N_MIN - 1


def test_a_within_n_run_validates_on_its_own_slices_or_trains_its_budget(cache_dir, monkeypatch):
    seen = []
    real = ex.fine_tune

    def spy(model, train_set, val_set, *args, **kwargs):
        seen.append((list(train_set.indices), None if val_set is None else list(val_set.indices)))
        return real(model, train_set, val_set, *args, **kwargs)

    monkeypatch.setattr(ex, "fine_tune", spy)
    model, info = ex.finetune_run(TINY, "knee-1.5T", 6, 0, validation="within-n", progress=False)
    train_idx, val_idx = ex.within_n_split(TINY, "knee-1.5T", 6, 0)
    assert seen[0] == (train_idx.indices, val_idx.indices)                  # trained and validated within the 6
    assert info["name"] == "end-to-end-within-n-knee-1.5T-R4-N6-s0-tiny-within-n"
    assert info["history"][0]["epoch"] == 0                                          # the start scored first
    assert all("val_ssim" in row for row in info["history"])
    _, few = ex.finetune_run(TINY, "knee-1.5T", 2, 0, validation="within-n", progress=False)
    assert few["steps"] == TINY.finetune_steps and all(row.get("val_loss") is None for row in few["history"])
    with pytest.raises(ValueError, match="validation must be one of"):
        ex.finetune_run(TINY, "knee-1.5T", 2, 0, validation="test-split")


def test_the_curves_put_each_recipe_at_its_share_and_the_scratch_networks_on_the_same_axis():
    import matplotlib

    matplotlib.use("Agg")
    subjects = np.repeat(np.arange(4), 3)
    pre, twin = np.full(12, 0.5), np.full(12, 0.7)          # a gap of 0.2
    record = {"_meta": {"target": "knee-1.5T", "acceleration": 4.0}, "pre-trained": _entry(pre, subjects),
              "twin": _entry(twin, subjects)}
    for n, gain in ((1, 0.02), (5, 0.08), (50, 0.16)):
        for seed in (0, 1, 2):
            record[f"baseline | N={n} | seed={seed}"] = _entry(pre + gain + 0.01 * (seed - 1), subjects,
                                                               method="baseline", n=n, seed=seed)
    record["flips | N=5 | seed=0"] = _entry(pre + 0.1, subjects, method="flips", n=5, seed=0)   # one N: no curve
    seeds = {"_meta": {}, **{f"scratch (full split) | seed={s}": {"method": "scratch (full split)", "seed": s,
                                                                    "summary": {"ssim_fg": {"mean": v}}}
                              for s, v in ((0, 0.66), (1, 0.67), (2, 0.68))}}
    assert grid.scratch_share(record, seeds) == pytest.approx([0.85, 0.8, 0.9])
    assert grid.scratch_share(record, None) is None
    fig = grid.recipe_curves_figure([record, {**record, "_meta": {**record["_meta"], "source": "brain-3T"}}],
                                    [seeds, None])
    left, right = fig.axes
    assert left.get_title() == "knee-1.5T, R = 4" and right.get_title() == "knee-1.5T, R = 4, from brain-3T"
    curves = {c.get_label(): c.lines[0] for c in left.containers}                    # one errorbar per recipe drawn
    assert list(curves) == ["baseline (3 seeds)"]                                      # flips ran at one N only
    np.testing.assert_allclose(curves["baseline (3 seeds)"].get_xdata(), [1, 5, 50])
    np.testing.assert_allclose(curves["baseline (3 seeds)"].get_ydata(), [10, 40, 80])  # gain / gap, in per cent
    levels = {line.get_label(): line.get_ydata()[0] for line in left.lines if not line.get_label().startswith("_")}
    assert levels["equal-data twin"] == 100 and levels["pre-trained"] == 0
    assert levels["scratch, full split"] == pytest.approx(85)
    assert "scratch, full split" not in [line.get_label() for line in right.lines]
    with pytest.raises(ValueError, match="2 recipe records but 1 scratch"):
        grid.recipe_curves_figure([record, record], [None])


def _claims_record():
    """Fine-tuning 'flips' and scratch-on-N 'scratch-flips' at N = 5 and 50 (3 seeds), with a pre-trained
    network at 0.5 and a twin at 0.7; the full-split scratch networks score 0.66 on average."""
    subjects = np.repeat(np.arange(4), 3)
    wobble = np.tile([0.01, -0.01, 0.0], 4)
    record = {"_meta": {"target": "knee-1.5T", "acceleration": 4.0, "scratch": {"lr": 0.003, "tune_n": 10}},
              "pre-trained": _entry(np.full(12, 0.5), subjects), "twin": _entry(np.full(12, 0.7), subjects)}
    for n, ft, sc in ((5, 0.62, 0.55), (50, 0.655, 0.65)):
        for seed in (0, 1, 2):
            for method, value in (("baseline", ft - 0.03), ("flips", ft), ("scratch-flips", sc)):
                record[f"{method} | N={n} | seed={seed}"] = _entry(value + wobble + 0.002 * (seed - 1), subjects,
                                                                   method=method, n=n, seed=seed)
    full = {f"scratch (full split) | seed={s}": {"method": "scratch (full split)", "seed": s,
                                                   **_entry(0.66 + wobble + 0.004 * (s - 1), subjects)} for s in (0, 1, 2)}
    return record, {"_meta": {}, **full}


def test_recipe_cases_compare_with_scratch_on_n_and_the_full_split_networks():
    record, seeds = _claims_record()
    cases = grid.recipe_claim_cases(record, seeds)
    same_n = {c["case"]: c["diff"]["ssim_fg"] for c in cases["finetune_beats_scratch_same_n"]}
    assert same_n["knee-1.5T R4, N = 5 (flips)"] == pytest.approx([0.07, 0.07, 0.07], abs=1e-9)
    assert same_n["knee-1.5T R4, N = 50 (flips)"][0] == pytest.approx(0.005)
    close = {c["case"]: c["diff"]["ssim_fg"] for c in cases["finetune_close_to_full"]}
    assert list(close) == ["knee-1.5T R4, N = 5 (flips)", "knee-1.5T R4, N = 50 (flips)"]   # the best at each N
    assert close["knee-1.5T R4, N = 5 (flips)"][0] == pytest.approx(-0.04)
    assert close["knee-1.5T R4, N = 50 (flips)"][0] == pytest.approx(-0.005)
    # the claims judge them by their rules: "close" is at most Thresholds.close below, "better" needs the CI
    verdicts = {v.key: v for v in report.claims({}, Thresholds(), cases)}
    close_cases = verdicts["finetune_close_to_full"].cases
    assert [c["holds"] for c in close_cases] == [False, True] and verdicts["finetune_close_to_full"].verdict == "partly"
    better = verdicts["finetune_beats_scratch_same_n"].cases
    assert [c["holds"] for c in better] == [True, False]   # +0.005 is below the minimum effect
    assert "fine-tuned − full-split scratch (3 seeds) -0.040" in close_cases[0]["evidence"]
    # no full-split networks, or none better than the pre-trained one: no "close" case
    assert grid.recipe_claim_cases(record, None)["finetune_close_to_full"] == []
    with pytest.raises(ValueError, match="take extra cases"):
        report.claims({}, Thresholds(), {"source_beats_zero_filled": []})


def test_the_recipe_sentence_keeps_scratch_on_n_apart_and_compares_it():
    record, _ = _claims_record()
    text = grid.recipe_sentence(record)
    assert "the best is *flips* (N = 5)" in text and "*scratch-flips* (N" not in text
    assert "from scratch on the same N under the same budget rule (*scratch-flips*, learning rate 0.003 chosen on " \
           "validation at N = 10) the network closes 25 % at N = 5, 75 % at N = 50" in text
    assert "at N = 5, fine-tuning with *flips* is better than it (foreground SSIM +0.070" in text
    assert "learning rate of" not in text.split("(*scratch-flips*")[0]
    record["_meta"].update(finetune_lr=1e-3, profile={"finetune_lr": 2e-4})
    assert grid.recipe_sentence(record).startswith("On knee-1.5T at R = 4, fine-tuning at a learning rate of 0.001 "
                                                   "(the profile's 0.0002), ")


def test_a_learning_rate_is_chosen_by_validation_and_the_profile_rate_keeps_its_key():
    """``finetune_recipes.py --scratch`` and ``--finetune-lrs`` choose a rate by the runs' validation
    scores (higher is better, a tie to the first given); the profile's own rate is passed as None so
    its run keeps the cache entry it has without ``lr``."""
    scores = {1e-4: 0.70, 2e-4: 0.74, 1e-3: 0.74, 3e-3: 0.61}
    seen = []

    def train_at(lr):
        seen.append(lr)
        return {"best_value": scores[lr]}

    chosen = fr.choose_lr([1e-4, 2e-4, 1e-3, 3e-3], train_at)
    assert seen == [1e-4, 2e-4, 1e-3, 3e-3]
    assert chosen == {"validation_by_lr": {"0.0001": 0.70, "0.0002": 0.74, "0.001": 0.74, "0.003": 0.61}, "lr": 2e-4}
    with pytest.raises(ValueError, match="at lr 0.001 has no finite validation score"):
        fr.choose_lr([1e-3], lambda lr: {"best_value": float("nan")})
    with pytest.raises(ValueError, match="no learning rates"):
        fr.choose_lr([], train_at)
    assert fr._lr_or_default(STANDARD.finetune_lr, STANDARD) is None
    assert fr._lr_or_default(1e-3, STANDARD) == 1e-3


def test_the_report_names_each_recipes_chosen_rate():
    record, _ = _claims_record()
    record["_meta"]["scratch"].update(recipe="flips", validation_by_lr={"0.003": 0.8})
    record["_meta"].update(cpu="a CPU", torch="2", threads=2, profile={"name": "standard", "finetune_lr": 2e-4},
                           finetune_tuning={"flips": {"tune_n": 10, "lr": 1e-3,
                                                      "validation_by_lr": {"0.0002": 0.79, "0.001": 0.81}}})
    assert "flips: fine-tuning learning rate 0.001, chosen at N = 10 (seed 0) by the best validation score among " \
           "0.0002 (0.7900), 0.001 (0.8100)" in fr.report(record)


def test_the_recipe_sentence_names_rates_chosen_on_validation():
    record, _ = _claims_record()
    record["_meta"].update(finetune_lr=None, profile={"finetune_lr": 2e-4},
                           finetune_tuning={"baseline": {"tune_n": 10, "lr": 5e-4}, "flips": {"tune_n": 10, "lr": 1e-3}})
    assert grid.recipe_sentence(record).startswith(
        "On knee-1.5T at R = 4, each recipe at the fine-tuning rate chosen on validation at N = 10 (baseline 0.0005, "
        "flips 0.001; the profile's 0.0002), ")


def test_a_chapter_reads_the_tuned_record_first_then_the_budget_study(tmp_path):
    assert grid.preferred_recipe_record(tmp_path, "standard", "knee-1.5T-R4") == "knee-1.5T-R4"   # none: the plain name
    for tail in ("", "-budget", "-lrtuned"):
        (tmp_path / f"finetune-recipes-standard-knee-1.5T-R4{tail}.json").write_text("{}")
        assert grid.preferred_recipe_record(tmp_path, "standard", "knee-1.5T-R4") == f"knee-1.5T-R4{tail}"
    assert grid.preferred_recipe_record(tmp_path, "ci", "knee-1.5T-R4") == "knee-1.5T-R4"   # another profile's files
    record, _ = _claims_record()
    assert grid.recipe_title(record) == "knee-1.5T, R = 4"
    record["_meta"]["finetune_tuning"] = {"flips": {"tune_n": 10, "lr": 1e-3}}
    assert grid.recipe_title(record) == "knee-1.5T, R = 4, rates tuned"


def test_flips_whole_is_flips_monitoring_whole_image_ssim():
    whole, _ = ex.recipe_config(STANDARD, 5, 0, "flips-whole")
    flips, _ = ex.recipe_config(STANDARD, 5, 0, "flips")
    assert STANDARD.finetune_monitor == "ssim_fg" and flips.monitor == "ssim_fg" and whole.monitor == "ssim"
    assert {k: v for k, v in whole.to_dict().items() if k != "monitor"} == \
        {k: v for k, v in flips.to_dict().items() if k != "monitor"}
    assert ex.RECIPE_PEERS["flips-whole"] == "flips"
