"""Findings chapters 6 (fine-tuning) and 7 (beyond the paper) state, checked against their records.

The records come from the notebooks executed with profile ``ci``, twice: on this CPU and on the
portable kernel family with one thread (``learning_records`` in conftest.py). The assertions are the
paper's claims: fine-tuning raises SSIM on each target over the pre-trained network; with the fewest
images a pre-trained start beats training from scratch; and fine-tuning on the knee makes the
network worse on its source domain (forgetting).

Every comparison must clear the cross-kernel spread of the numbers it compares
(``findings.clears``, measured by ``benchmarks/kernel_spread.py``). Where the ci profile's small
networks cannot show a claim by that margin, the claim is asserted on the recorded ``standard``
grid instead and the test here says so (``CI_EXEMPT``).
"""
from __future__ import annotations

import pytest

from findings import chapter_numbers, clears

pytestmark = pytest.mark.notebooks

FT = "06_fine_tuning"
# What the ci profile shows by more than the kernel spread (benchmarks/results/kernel_spread-ci.txt):
# on the knee, fine-tuning on 4 slices raises foreground SSIM and PSNR, but its whole-image SSIM
# moved by 0.027 between kernels, more than the gain: that claim is asserted on the standard grid
# (test_findings_grid::test_fine_tuning_raises_every_metric_on_the_anatomy_and_acceleration_shifts).
CI_EXEMPT = {("knee-1.5T R4", "ssim")}


def test_fine_tuning_raises_ssim_on_every_target(learning_records):
    """Foreground SSIM, whole-image SSIM and PSNR rise on the anatomy and acceleration shifts. The
    field-strength shift costs the pre-trained network almost nothing (at equal data: no foreground
    gap, -0.007 whole-image SSIM at `standard`, see the grid findings), and fine-tuning, which scores
    its start first, may keep the pre-trained weights: there it must not end below the start."""
    n = chapter_numbers(learning_records, FT)
    n_tab = str(n["n_table"])
    assert n["shifts"], "chapter 6 recorded no shift"
    failures, checked = [], 0
    for name, entry in n["shifts"].items():
        for metric in ("ssim", "ssim_fg", "psnr"):
            ft, pre = f"shifts/{name}/fine-tuned/{n_tab}/{metric}", f"shifts/{name}/pre-trained/{metric}"
            if name.startswith("brain-3T"):
                if entry["fine-tuned"][n_tab][metric] < entry["pre-trained"][metric] - (0.5 if metric == "psnr" else 0.005):
                    failures.append(f"{name}: {metric} fine-tuned (N={n_tab}) {entry['fine-tuned'][n_tab][metric]:.4f} "
                                    f"fell below the pre-trained start {entry['pre-trained'][metric]:.4f}")
            elif (name, metric) not in CI_EXEMPT:
                checked += 1
                failures.append(clears(n, FT, ft, pre, f"{name} {metric}, fine-tuned (N={n_tab}) over pre-trained"))
    failures = [f for f in failures if f]
    assert checked >= 4, f"only {checked} fine-tuning gains checked: the shifts recorded are {sorted(n['shifts'])}"
    assert not failures, "; ".join(failures)


def test_fine_tuned_beats_scratch_with_fewest_images(learning_records):
    n = chapter_numbers(learning_records, FT)
    n_min = str(min(n["ns"]))
    checked, failures = 0, []
    for name, entry in n["shifts"].items():
        if n_min in entry["fine-tuned"] and n_min in entry["from scratch"]:
            checked += 1
            failures.append(clears(n, FT, f"shifts/{name}/fine-tuned/{n_min}/ssim_fg",
                                   f"shifts/{name}/from scratch/{n_min}/ssim_fg", f"{name}: fine-tuned over scratch"))
            failures.append(clears(n, FT, f"shifts/{name}/diff_ft_minus_scratch/{n_min}/ssim_fg/1", None,
                                   f"{name}: CI low of fine-tuned minus scratch at N={n_min}"))
    assert checked, f"no shift recorded both methods at N={n_min}"
    failures = [f for f in failures if f]
    assert not failures, "; ".join(failures)


def test_records_are_consistent(learning_records):
    n = chapter_numbers(learning_records, "06_fine_tuning")
    for name, entry in n["shifts"].items():
        for method in ("pre-trained", "zero-filled", "CG-SENSE"):
            assert 0 < entry[method]["ssim"] <= 1, (name, method)
        for n_slices, diff in entry["diff_ft_minus_pre"].items():
            mean, low, high = diff["ssim_fg"]
            assert low <= mean <= high, (name, n_slices)
            expected = entry["fine-tuned"][n_slices]["ssim_fg"] - entry["pre-trained"]["ssim_fg"]
            assert abs(mean - expected) < 1e-9, (name, n_slices)  # one seed: difference of the means


def test_forgetting_after_knee_fine_tuning(learning_records):
    """Chapter 7's forgetting claim on the anatomy it is judged by (foreground SSIM). Whole-image
    source SSIM is left out at this profile: with the revised knee phantom its drop (+0.026 in one
    kernel-variant run) no longer clears the ci networks' cross-kernel spread (0.029,
    ``benchmarks/results/kernel_spread-ci.txt``), as chapter 6's whole-image claims did before it."""
    n = chapter_numbers(learning_records, "07_beyond")
    assert n["target"] == "knee-1.5T"
    failures = [
        clears(n, "07_beyond", "source_ssim_fg/pre-trained", "source_ssim_fg/end-to-end",
               "source SSIM (fg) before vs after end-to-end fine-tuning"),
        clears(n, "07_beyond", None, "forgetting_diff_ssim_fg/end-to-end/2", "forgetting CI must lie below zero"),
    ]
    failures = [f for f in failures if f]
    assert not failures, "; ".join(failures)


def test_strategy_and_dc_records(learning_records):
    n = chapter_numbers(learning_records, "07_beyond")
    assert set(n["strategy_ssim_fg"]) == {"pre-trained", "end-to-end", "frozen-encoder", "last-layers"}
    share = n["strategy_trainable_share"]
    assert share["end-to-end"] == 1.0 and 0 < share["last-layers"] < share["frozen-encoder"] < 1
    # the null-space argument: DC leaves part of an invented structure, more of a fine one
    left = n["dc_hallucination_energy_left"]
    assert 0 < left["coarse lesion (radius 6 px)"] < left["fine lesion (radius 1.5 px)"] < 1
