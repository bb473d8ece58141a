"""The clinical sites' ablation (``benchmarks/clinical_factors.py``): each step changes what its label
says and nothing else, the path ends at the 3 T site, and the record's changes and sentence follow
the book's rule (checked against a per-subject t-interval computed here with scipy)."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import clinical_factors as cf  # noqa: E402

from mrtl_core import grid, simulate  # noqa: E402


def _diff(a: simulate.Domain, b: simulate.Domain) -> set[str]:
    """Names of the domain fields (``site.<field>`` for the protocol's) in which ``a`` and ``b`` differ."""
    out = {f.name for f in dataclasses.fields(simulate.Domain)
           if f.name not in ("description", "site") and getattr(a, f.name) != getattr(b, f.name)}
    out |= {f"site.{f.name}" for f in dataclasses.fields(simulate.ClinicalSite)
            if getattr(a.site, f.name) != getattr(b.site, f.name)}
    return out


def test_each_step_changes_what_it_says_and_the_path_ends_at_the_3t_site():
    plan = cf.steps()
    domains = {label: d for label, _, d in plan}
    labels = [label for label, _, _ in plan]
    lo, hi = simulate.get_domain(cf.LOW), simulate.get_domain(cf.HIGH)
    assert _diff(domains[labels[0]], lo) == {"name"}
    expected = [
        {"field_strength_T", "snr_1p5T", "site.bandwidth_hz_per_px"},
        {"b1_centre", "b1_edge", "protocol", "site.refocusing_deg", "site.TR"},
        {"num_coils", "coil_rings", "coil_height_mm"},
        {"snr_1p5T", "site.fov_mm", "site.matrix", "site.slice_thickness_mm"},
        {"snr_1p5T", "site.bandwidth_hz_per_px"},
        {"snr_1p5T", "site.name", "site.source"},
    ]
    for i, changed in enumerate(expected, start=1):
        assert _diff(domains[labels[i]], domains[labels[i - 1]]) - {"snr_1p5T"} <= changed - {"snr_1p5T"}, labels[i]
        assert _diff(domains[labels[i]], domains[labels[i - 1]]) >= changed - {"snr_1p5T"}, labels[i]
    assert _diff(domains[labels[6]], hi) == {"name"}
    # the noise is the 1.5 T site's until the SNR step, which makes it the 3 T site's
    sigma = lo.noise_std
    for label in labels[1:6]:
        assert domains[label].noise_std == pytest.approx(sigma, rel=1e-12), label
    assert domains[labels[6]].noise_std == pytest.approx(hi.noise_std, rel=1e-12)
    # doubling B0 and the bandwidth keeps the fat displacement of the 1.5 T site
    assert simulate.chemical_shift_mm(domains[labels[1]].site, 3.0) == pytest.approx(
        simulate.chemical_shift_mm(lo.site, 1.5))
    # the two steps alone: one change on the 1.5 T site, against it
    matrix_alone, snr_alone = plan[7], plan[8]
    assert matrix_alone[1] == snr_alone[1] == labels[0]
    assert _diff(matrix_alone[2], domains[labels[0]]) == {"snr_1p5T", "site.fov_mm", "site.matrix",
                                                          "site.slice_thickness_mm"}
    assert matrix_alone[2].noise_std == pytest.approx(sigma, rel=1e-12)
    assert _diff(snr_alone[2], domains[labels[0]]) == {"snr_1p5T"}
    # the SNR alone multiplies the noise by the SNR step's factor, the voxel law's ratio of the sites
    law = simulate.voxel_snr_factor(lo.site, 1.5) / simulate.voxel_snr_factor(hi.site, 3.0)
    assert snr_alone[2].noise_std / sigma == pytest.approx(hi.noise_std / domains[labels[5]].noise_std)
    assert snr_alone[2].noise_std / sigma == pytest.approx(law, rel=0.35)


def _record(offsets: dict[str, float], seeds=(0, 1, 2), subjects=4, slices=5, seed_noise=0.002) -> dict:
    """A clinical-ablation record whose 1.5 T site's network scores ``0.8 + offset[step]`` plus a
    per-subject and a per-seed wobble; the 3 T site's network 0.7 everywhere."""
    rng = np.random.default_rng(0)
    plan = [(label, ref) for label, ref, _ in cf.steps() if label in offsets]
    record = {"_meta": {"sites": ["1.5 T site", "3 T site"], "seeds": list(seeds), "subjects": subjects,
                        "steps": [{"label": label, "reference": ref} for label, ref in plan]}}
    # subjects differ alike at every step (0.01), each step adds its own small wobble (0.002)
    subject_wobble = rng.normal(0, 0.01, subjects) + rng.normal(0, 0.002, (len(plan), subjects))
    for i, (label, _) in enumerate(plan):
        for net in ("1.5 T site", "3 T site", "zero-filled"):
            for s in (seeds if net != "zero-filled" else (None,)):
                base = {"1.5 T site": 0.8 + offsets[label], "3 T site": 0.7, "zero-filled": 0.6}[net]
                wobble = subject_wobble[i] if net == "1.5 T site" else np.zeros(subjects)
                seed_shift = 0.0 if s is None else seed_noise * (s - 1)
                values = np.repeat(base + wobble + seed_shift, slices) + rng.normal(0, 0.003, subjects * slices)
                record[f"{label} | {net} | seed={s}"] = {
                    "target": label, "method": net, "seed": s,
                    "summary": {"ssim_fg": {"mean": float(values.mean())}},
                    "per_slice": {"ssim_fg": values.tolist()},
                    "subjects": [str(k) for k in range(subjects)],
                    "slice_subject": [k for k in range(subjects) for _ in range(slices)]}
    return record


def _subject_interval(record: dict, step: str, ref: str) -> tuple[float, float, float]:
    """The seed-averaged change of the 1.5 T site's network, per-subject means, t-interval by scipy."""
    def mean_over_seeds(label):
        runs = [v for k, v in record.items() if not k.startswith("_") and v["target"] == label
                and v["method"] == "1.5 T site"]
        return np.mean([r["per_slice"]["ssim_fg"] for r in runs], axis=0)
    d = mean_over_seeds(step) - mean_over_seeds(ref)
    subjects = np.array(next(v for v in record.values() if "slice_subject" in v)["slice_subject"])
    per_subject = np.array([d[subjects == k].mean() for k in np.unique(subjects)])
    lo, hi = scipy_stats.t.interval(0.95, len(per_subject) - 1, loc=per_subject.mean(),
                                    scale=scipy_stats.sem(per_subject))
    return per_subject.mean(), lo, hi


# each step's score against the 1.5 T site's: the path's steps change it by -0.003, -0.001, +0.002, -0.15,
# 0 and -0.03 (-0.182 in all)
OFFSETS = {"1.5 T site": 0.0, "+ 3 T relaxation": -0.003, "+ 3 T transmit": -0.004, "+ 16-channel array": -0.002,
           "+ 3 T matrix": -0.152, "+ 3 T bandwidth": -0.152, "+ 3 T SNR (= the 3 T site)": -0.182,
           "1.5 T site + 3 T matrix alone": -0.14, "1.5 T site + 3 T SNR alone": -0.002}


def test_changes_are_seed_averaged_and_paired_over_subjects():
    record = _record(OFFSETS)
    rows = {r["step"]: r for r in grid.factor_rows(record)}
    assert list(rows) == list(OFFSETS)
    assert rows["1.5 T site"]["change"] is None
    for step, row in rows.items():
        if row["change"] is None:
            continue
        np.testing.assert_allclose(row["change"], _subject_interval(record, step, row["reference"]), atol=1e-12)
        lo, hi = row["change_seeds"]
        assert lo <= row["change"][0] + 1e-12 and row["change"][0] - 1e-12 <= hi
    assert rows["+ 3 T matrix"]["change"][0] == pytest.approx(-0.15, abs=0.005)
    assert rows["+ 3 T SNR (= the 3 T site)"]["change"][0] == pytest.approx(-0.03, abs=0.005)
    assert rows["1.5 T site"]["gap"][0] == pytest.approx(0.1, abs=0.02)
    table = grid.factor_table(record)
    assert table.loc["+ 3 T matrix", "against"] == "+ 16-channel array"


def test_the_sentence_names_the_costliest_step_its_share_and_the_steps_alone():
    text = grid.factor_sentence(_record(OFFSETS))
    assert "costs the 1.5 T site's network most is the 3 T matrix: its foreground SSIM is lower by 0.1" in text
    assert "Also costly: the 3 T SNR, lower by 0.0" in text
    assert "the 3 T relaxation" in text.split("The other steps")[1]
    assert "Over the whole path its foreground SSIM is lower by 0.18" in text
    share = float(text.split("the 3 T matrix is ")[1].split(" %")[0])
    assert share == pytest.approx(100 * 0.15 / 0.182, abs=3)
    assert "With the 3 T matrix alone on the 1.5 T site, the network's foreground SSIM is lower by 0.1" in text
    assert "With the 3 T SNR alone on the 1.5 T site, the network's foreground SSIM is not clearly different" in text


def test_a_path_without_a_costly_step_says_so_and_a_missing_record_is_named(tmp_path):
    quiet = {k: (0.001 if k != "1.5 T site" else 0.0) for k in OFFSETS}
    text = grid.factor_sentence(_record(quiet))
    assert text.startswith("No step of the path")
    assert "costliest" not in text and "% of that" not in text
    with pytest.raises(FileNotFoundError, match="clinical_factors.py --out"):
        grid.load_clinical_factors(tmp_path / "none.json")
    (tmp_path / "empty.json").write_text('{"_meta": {}}')
    with pytest.raises(ValueError, match="_meta.steps"):
        grid.load_clinical_factors(tmp_path / "empty.json")
