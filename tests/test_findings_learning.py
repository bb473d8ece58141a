"""The learning findings that chapters 4 (the pre-trained U-Net) and 5 (generalization failures)
state in their text, checked on the records the notebooks wrote under profile ``ci``, on this CPU
and on the portable kernel family with one thread (``learning_records`` in conftest.py). Every
comparison clears the cross-kernel spread of the numbers it compares (``findings.clears``).

They must hold in every profile: the U-Net beats zero-filling on its own domain; the anatomy
shift and a higher acceleration lower its SSIM; and where chapter 5 trained a
reference U-Net on the target domain, the pre-trained model stays below it there. A failure means
the chapter's text (or the profile) no longer supports what it says.
"""
from __future__ import annotations

import pytest

from findings import chapter_numbers, clears, finite, recorded

PRETRAINED = "04_pretrained_unet"
GENERALIZATION = "05_generalization"


@pytest.fixture(scope="module")
def pretrained(learning_records) -> dict:
    return chapter_numbers(learning_records, PRETRAINED)


@pytest.fixture(scope="module")
def shifts(learning_records) -> dict:
    return chapter_numbers(learning_records, GENERALIZATION)


# --- chapter 4 ----------------------------------------------------------------------------------


def test_pretraining_ran_and_recorded_its_history(pretrained):
    assert pretrained["pretrain_epochs"] >= 1 and pretrained["pretrain_steps"] >= 1
    assert len(pretrained["history"]) == pretrained["pretrain_epochs"]
    assert 1 <= pretrained["pretrain_best_epoch"] <= pretrained["pretrain_epochs"]
    losses = [finite(row["train_loss"], "train_loss") for row in pretrained["history"]]
    assert all(loss > 0 for loss in losses)


@pytest.mark.parametrize("metric", ["ssim", "ssim_fg", "psnr"])
def test_pretrained_unet_beats_zero_filled_on_its_own_domain(pretrained, metric):
    failures = [clears(pretrained, PRETRAINED, f"scores/U-Net/{metric}/mean", f"scores/zero-filled/{metric}/mean",
                       "U-Net over zero-filled, brain-1.5T R4"),
                clears(pretrained, PRETRAINED, f"differences/U-Net/zero-filled/{metric}/1", None,
                       "CI low of the paired gain of the U-Net over zero-filling")]
    failures = [f for f in failures if f]
    assert not failures, "; ".join(failures)


def test_metric_ranges(pretrained):
    for method in ("zero-filled", "CG-SENSE", "U-Net"):
        for region in ("", "_fg"):
            assert -1 <= recorded(pretrained, f"scores/{method}/ssim{region}/mean") <= 1
            assert recorded(pretrained, f"scores/{method}/rmse{region}/mean") > 0


# --- chapter 5 ----------------------------------------------------------------------------------


def _unet(shifts: dict, name: str, metric: str = "ssim_fg") -> float:
    conditions = shifts["conditions"]
    assert name in conditions, f"chapter 5 recorded no condition {name!r} (has {sorted(conditions)})"
    return finite(conditions[name]["unet"][metric], f"{name} unet {metric}")


def test_chapter5_source_matches_chapter4(pretrained, shifts):
    # the same cached model on the same fixed test masks: the numbers agree
    assert _unet(shifts, shifts["source"], "ssim") == pytest.approx(recorded(pretrained, "scores/U-Net/ssim/mean"), abs=1e-9)


def test_anatomy_shift_lowers_ssim(shifts):
    """The knee scores below the source brain. The field-strength shift is not asserted here: at ci
    the 3 T foreground SSIM sat 0.0006-0.0013 below the source's, inside the 0.006 the two numbers
    moved between CPU kernels, and comparing two anatomies' images says little anyway. The book's
    3 T claim is the equal-data comparison on the recorded standard grid
    (``test_findings_grid::test_field_shift_costs_background_only``)."""
    names = [n for n, c in shifts["conditions"].items() if c["kind"] == "anatomy"]
    assert len(names) == 1, f"expected one anatomy shift, got {names}"
    failure = clears(shifts, GENERALIZATION, f"conditions/{shifts['source']}/unet/ssim_fg",
                     f"conditions/{names[0]}/unet/ssim_fg", f"{names[0]}: U-Net SSIM (fg) below the source domain's")
    assert failure is None, failure


def test_higher_acceleration_lowers_ssim(shifts):
    by_r = {float(c["acceleration"]): n for n, c in shifts["conditions"].items()
            if c["kind"] in ("source", "acceleration")}
    high = max(by_r)
    assert high > 4, f"the acceleration sweep {sorted(by_r)} has no R above 4"
    name = by_r[high]
    assert shifts["drop_vs_source"][name]["paired"], "the acceleration shift must be paired on the same slices"
    failures = [clears(shifts, GENERALIZATION, f"conditions/{by_r[4.0]}/unet/ssim_fg", f"conditions/{name}/unet/ssim_fg",
                       f"R={high:g} below R=4"),
                clears(shifts, GENERALIZATION, None, f"drop_vs_source/{name}/ssim_fg/2",
                       f"R={high:g} vs R=4: the paired SSIM (fg) change's CI must lie below zero")]
    failures = [f for f in failures if f]
    assert not failures, "; ".join(failures)


def test_pretrained_below_target_trained_reference(shifts):
    """The anatomy shift is a failure against what is achievable there: a U-Net trained on the
    target does better. The field-strength shift is not asserted: with the book's simulated
    scanners the pre-trained network handles 3 T about as well as a network trained on 3 T (the
    `standard` profile measures no significant gap), so chapter 5 computes its sentence from the
    numbers instead of claiming a failure."""
    references = shifts.get("reference") or {}
    if not references:
        pytest.skip("chapter 5 recorded no target-trained reference")
    anatomy = [name for name in references if name.startswith("knee")]
    assert anatomy, f"chapter 5 recorded no anatomy-shift reference (got {sorted(references)})"
    failures = []
    for name in anatomy:
        failures.append(clears(shifts, GENERALIZATION, None, f"reference/{name}/unet_minus_ref/ssim_fg/0",
                               f"{name}: pre-trained minus target-trained U-Net, SSIM (fg)"))
        failures.append(clears(shifts, GENERALIZATION, f"reference/{name}/ssim_fg", f"conditions/{name}/unet/ssim_fg",
                               f"{name}: target-trained over pre-trained U-Net"))
    failures = [f for f in failures if f]
    assert not failures, "; ".join(failures)


def test_every_condition_has_all_methods(shifts):
    for name, c in shifts["conditions"].items():
        for method in ("zf", "cg", "unet"):
            for metric in ("ssim", "ssim_fg", "psnr", "psnr_fg"):
                finite(c[method][metric], f"{name} {method} {metric}")
