"""Tests of the procedural knee phantom: contract (shapes, ranges, sums), determinism, and anatomy."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mrtl_core.phantoms.knee import FOV_MM, TISSUES, knee_tissue_slices

NS, SIZE = 11, 128          # 11 slices medial -> lateral: index 5 is near the midline


@pytest.fixture(scope="module")
def knee():
    return knee_tissue_slices(np.random.default_rng(7), NS, SIZE)


def _sum(fr):
    return sum(fr[t].astype(np.float64) for t in TISSUES)


def test_contract_shapes_dtype_keys(knee):
    assert set(knee) == set(TISSUES)
    assert set(TISSUES) == {"marrow", "cortical_bone", "cartilage", "meniscus", "fluid", "muscle", "fat",
                            "skin", "tendon"}
    for t, v in knee.items():
        assert v.shape == (NS, SIZE, SIZE), t
        assert v.dtype == np.float32, t


@pytest.mark.parametrize("size", [64, 320])
def test_other_sizes(size):
    fr = knee_tissue_slices(np.random.default_rng(1), 2, size)
    assert fr["fat"].shape == (2, size, size)
    assert _sum(fr).max() <= 1 + 1e-5
    assert fr["marrow"].sum() > 0


def test_fractions_in_range_and_sum_at_most_one(knee):
    for t, v in knee.items():
        assert np.isfinite(v).all(), t
        assert v.min() >= 0.0 and v.max() <= 1.0, t
        assert v.max() > 0.5, f"{t} never dominates a pixel"
    total = _sum(knee)
    assert total.max() <= 1 + 1e-5
    # inside the limb the voxel is full of tissue (air only outside, plus the popliteal flow void)
    body = ndimage.binary_erosion(total > 0.5, iterations=3)
    assert np.mean(total[body] > 0.999) > 0.97
    # partial volume at edges, not binary masks
    edge = (total > 0.05) & (total < 0.95)
    assert edge.sum() > 0.3 * np.sqrt(body.sum() / NS) * NS


def test_object_inside_central_region(knee):
    total = _sum(knee)
    m = int(round(0.05 * SIZE))
    border = np.ones((SIZE, SIZE), bool)
    border[m:-m, m:-m] = False
    assert total[:, border].max() == 0.0
    # ... and fills most of the field of view (the leg is ~110-130 mm of the 160 mm FOV)
    rows = np.where(total[NS // 2].max(axis=1) > 0.5)[0]
    cols = np.where(total[NS // 2].max(axis=0) > 0.5)[0]
    assert (rows[-1] - rows[0]) > 0.7 * SIZE and (cols[-1] - cols[0]) > 0.55 * SIZE
    assert FOV_MM > 100


def test_deterministic_given_seed(knee):
    again = knee_tissue_slices(np.random.default_rng(7), NS, SIZE)
    for t in TISSUES:
        np.testing.assert_array_equal(again[t], knee[t])


def test_different_rng_gives_a_different_subject(knee):
    other = knee_tissue_slices(np.random.default_rng(8), NS, SIZE)
    diff = np.mean([np.abs(other[t] - knee[t]).mean() for t in TISSUES])
    assert diff > 0.01
    # not just texture: the bone outlines move
    bone_a = knee["marrow"] + knee["cortical_bone"]
    bone_b = other["marrow"] + other["cortical_bone"]
    assert np.abs(bone_a - bone_b).mean() > 0.01


def _marrow_components(fr, s):
    lab, n = ndimage.label(fr["marrow"][s] + fr["cortical_bone"][s] > 0.5)
    sizes = ndimage.sum(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    return lab, [i + 1 for i, sz in enumerate(sizes) if sz > 20]


def test_midline_slice_has_cruciates_patella_and_tendons(knee):
    mid = NS // 2
    # femur, tibia and patella: three separate bones; the patella is the most anterior (leftmost) one
    lab, comps = _marrow_components(knee, mid)
    assert len(comps) >= 3
    centres = ndimage.center_of_mass(np.ones_like(lab), lab, comps)
    ant = min(centres, key=lambda c: c[1])
    others = [c for c in centres if c is not ant]
    assert all(ant[1] < c[1] - 0.1 * SIZE for c in others)
    # ligaments (cruciates) and the patellar tendon: a lot of tendon near the midline
    assert knee["tendon"][mid].sum() * (FOV_MM / SIZE) ** 2 > 300.0     # mm^2
    # the anatomy changes through the joint: a far-lateral slice looks different
    assert np.abs(knee["marrow"][mid] - knee["marrow"][0]).mean() > 0.02
    assert np.abs(knee["marrow"][mid] - knee["marrow"][-1]).mean() > 0.02


def test_marrow_is_enclosed_by_cortical_bone():
    fr = knee_tissue_slices(np.random.default_rng(3), 5, 256)
    soft = sum(fr[t] for t in ("fat", "muscle", "fluid", "cartilage", "meniscus", "tendon", "skin")) > 0.5
    marrow = fr["marrow"] > 0.5
    assert marrow.sum() > 1000
    # a cortical shell (>= 1.3 mm, two pixels at 0.625 mm) separates marrow from soft tissue
    near_soft = ndimage.binary_dilation(soft, structure=np.ones((1, 3, 3), bool))
    assert not (near_soft & marrow).any()
    # trabecular texture: marrow fraction varies inside the bone (bone partly replaces marrow)
    core = ndimage.binary_erosion(marrow, structure=np.ones((1, 5, 5), bool))
    assert fr["marrow"][core].std() > 0.03
    assert (fr["cortical_bone"][core] > 0.05).mean() > 0.2


def test_menisci_and_cartilage_in_the_compartments(knee):
    men = knee["meniscus"].sum(axis=(1, 2))
    assert (men[1:-1] > 5).any()
    # menisci sit in the medial and lateral compartments, not at the midline notch
    assert men[NS // 2] < men.max() / 2
    assert (knee["cartilage"].sum(axis=(1, 2))[2:-2] > 10).all()


def test_fluid_muscle_fat_and_skin_everywhere(knee):
    for t in ("fat", "muscle", "skin"):
        assert (knee[t].sum(axis=(1, 2)) > 10).all(), t
    assert knee["fluid"].sum() > 10


def test_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="rng"):
        knee_tissue_slices(0, 2, 64)
    with pytest.raises(ValueError, match="num_slices"):
        knee_tissue_slices(rng, 0, 64)
    with pytest.raises(ValueError, match="size"):
        knee_tissue_slices(rng, 2, 8)
    with pytest.raises(ValueError, match="num_slices"):
        knee_tissue_slices(rng, 2.5, 64)
