"""The 3 T ablation's scanner variants (``benchmarks/field_shift.py``): one change per step, and
what-ifs whose physics is what they say."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import field_shift  # noqa: E402

from mrtl_core import simulate  # noqa: E402


def _diff(a, b) -> set[str]:
    return {f.name for f in dataclasses.fields(simulate.Domain)
            if f.name != "description" and getattr(a, f.name) != getattr(b, f.name)}


def test_steps_change_one_factor_each_and_end_at_the_3t_scanner():
    steps = dict(field_shift.variants())
    labels = list(steps)
    assert _diff(steps[labels[0]], simulate.get_domain("brain-1.5T")) == {"name"}
    expected = [{"field_strength_T", "snr_1p5T"}, {"b1_centre", "b1_edge"},
                {"num_coils", "coil_rings", "coil_height_mm"}, {"snr_1p5T"}]
    for i, changed in enumerate(expected, start=1):
        assert _diff(steps[labels[i]], steps[labels[i - 1]]) == changed, labels[i]
    assert _diff(steps[labels[4]], simulate.get_domain("brain-3T")) == {"name"}
    # relaxation step: same noise level as 1.5 T despite the 3 T field
    assert steps[labels[1]].noise_std == pytest.approx(steps[labels[0]].noise_std)
    assert steps[labels[4]].noise_std == pytest.approx(steps[labels[0]].noise_std / 2)


def test_fat_water_shift_in_mm():
    # 3.4 ppm x 42.577 MHz/T x B0, over 150 Hz per 1 mm readout pixel
    for b0 in (1.5, 3.0):
        assert field_shift.fat_shift_mm(b0) == pytest.approx(3.4e-6 * 42.577e6 * b0 / 150.0)


def test_chemical_shift_moves_fat_along_the_readout_only():
    base = simulate.get_domain("brain-3T")
    moved = field_shift.what_if(base, fat_shift_mm=6.0)
    size = 64
    a = base.tissue_slices(np.random.default_rng(3), 1, size)
    b = moved.tissue_slices(np.random.default_rng(3), 1, size)
    rows = np.arange(size)[:, None]
    for tissue in ("fat", "marrow"):
        centroid = lambda f: float((f[0] * rows).sum() / f[0].sum())  # noqa: E731
        assert centroid(b[tissue]) - centroid(a[tissue]) == pytest.approx(6.0 / (moved.fov_mm / size), rel=0.03)
        # columns (the phase-encode direction) are untouched: the column profile keeps its shape
        np.testing.assert_allclose(b[tissue][0].sum(axis=0), a[tissue][0].sum(axis=0), atol=0.05 * a[tissue].max())
    for tissue in set(a) - {"fat", "marrow"}:
        np.testing.assert_array_equal(a[tissue], b[tissue])


def test_swapped_encoding_transposes_the_anatomy():
    base = simulate.get_domain("brain-3T")
    a = base.tissue_slices(np.random.default_rng(5), 2, 32)
    b = field_shift.what_if(base, swap_encoding=True).tissue_slices(np.random.default_rng(5), 2, 32)
    for tissue in a:
        np.testing.assert_array_equal(b[tissue], a[tissue].transpose(0, 2, 1))
