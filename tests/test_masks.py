"""Cartesian masks: fastMRI's centre lines, exact budgets, seeding, variable density, fastMRI's call signature, errors.

tests/test_fastmri_interop.py compares the fastMRI-signature functions with fastMRI's own code; here,
their invariants.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mrtl_core.masks import (
    EquispacedMaskFractionFunc,
    EquispacedMaskFunc,
    ExactMaskFunc,
    MaskFunc,
    RandomMaskFunc,
    apply_mask,
    center_lines,
    default_center_fraction,
    effective_acceleration,
    make_mask,
)

# fastMRI's ACS block (RandomMaskFunc): round(W * cf) columns starting at (W - n + 1) // 2,
# written out for the standard (R, cf) pairs and widths.
EXPECTED_CENTRE = {
    (368, 0.08): (170, 199),
    (368, 0.04): (177, 192),
    (320, 0.08): (147, 173),
    (320, 0.04): (154, 167),
    (128, 0.08): (59, 69),
    (128, 0.04): (62, 67),
}


@pytest.mark.parametrize("num_cols,cf", list(EXPECTED_CENTRE))
def test_center_lines_match_fastmri(num_cols, cf):
    start, stop = EXPECTED_CENTRE[(num_cols, cf)]
    assert center_lines(num_cols, cf) == slice(start, stop)


@pytest.mark.parametrize("kind", ["random", "equispaced"])
@pytest.mark.parametrize("num_cols,cf,accel", [(w, cf, 4 if cf == 0.08 else 8) for w, cf in EXPECTED_CENTRE])
def test_fastmri_pairs_sample_the_exact_centre(num_cols, cf, accel, kind):
    start, stop = EXPECTED_CENTRE[(num_cols, cf)]
    mask = make_mask(num_cols, accel, cf, kind=kind, seed=3)
    assert mask.dtype == bool and mask.shape == (num_cols,)
    assert mask[start:stop].all()
    # The centre block is exactly that: the lines just outside it are not forced on
    # (check over several seeds, since a random line may land there).
    edges = [make_mask(num_cols, accel, cf, kind=kind, seed=s)[[start - 1, stop]] for s in range(20)]
    assert not np.all(edges)


def test_default_center_fraction_is_fastmri_pairing():
    assert default_center_fraction(4) == pytest.approx(0.08)
    assert default_center_fraction(8) == pytest.approx(0.04)
    assert default_center_fraction(1) == pytest.approx(0.32)


@pytest.mark.parametrize("kind", ["random", "equispaced"])
@pytest.mark.parametrize("accel", [2, 3, 4, 5, 6, 7, 8, 9, 10])
@pytest.mark.parametrize("num_cols", [128, 320, 368])
def test_sampled_lines_within_one_of_budget(accel, kind, num_cols):
    for seed in range(3):
        mask = make_mask(num_cols, accel, kind=kind, seed=seed)
        assert abs(mask.sum() - num_cols / accel) <= 1
        assert effective_acceleration(mask) == pytest.approx(num_cols / mask.sum())


def test_equispaced_lines_are_evenly_spaced_outside_the_centre():
    mask = make_mask(368, 4, 0.08, kind="equispaced", seed=0)
    centre = center_lines(368, 0.08)
    outer = np.flatnonzero(~np.isin(np.arange(368), np.arange(centre.start, centre.stop)))
    positions = np.flatnonzero(mask[outer])  # indices within the outer columns
    gaps = np.diff(positions)
    assert gaps.max() - gaps.min() <= 1


def test_same_seed_same_mask_different_seed_different_mask():
    for kind in ("random", "equispaced"):
        a = make_mask(320, 4, 0.08, kind=kind, seed=11)
        assert np.array_equal(a, make_mask(320, 4, 0.08, kind=kind, seed=11))
        assert not np.array_equal(a, make_mask(320, 4, 0.08, kind=kind, seed=12))
    vd = make_mask(320, 4, 0.08, seed=5, variable_density=2.0)
    assert np.array_equal(vd, make_mask(320, 4, 0.08, seed=5, variable_density=2.0))


def test_variable_density_samples_more_lines_near_the_centre():
    num_cols, centre = 256, center_lines(256, 0.04)
    near = np.zeros(num_cols, dtype=bool)
    near[num_cols // 4 : 3 * num_cols // 4] = True  # the inner half of k-space
    near[centre] = False  # not counting the forced ACS lines

    def near_share(vd):
        counts = [make_mask(num_cols, 8, 0.04, seed=s, variable_density=vd)[near].sum() for s in range(40)]
        return np.mean(counts)

    uniform, dense = near_share(None), near_share(4.0)
    assert dense > 1.3 * uniform
    # Same budget either way.
    assert make_mask(num_cols, 8, 0.04, seed=0, variable_density=4.0).sum() == make_mask(num_cols, 8, 0.04, seed=0).sum()


def test_effective_acceleration_of_tensors_and_nd_masks():
    mask = make_mask(128, 4, 0.08, seed=0)
    assert effective_acceleration(mask) == pytest.approx(128 / 32)
    assert effective_acceleration(torch.from_numpy(mask)) == pytest.approx(4.0)
    assert effective_acceleration(np.broadcast_to(mask, (2, 5, 128))) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="samples no column"):
        effective_acceleration(np.zeros(16, dtype=bool))


def test_mask_func_picks_among_pairs_and_is_seeded():
    func = MaskFunc(center_fractions=[0.08, 0.04], accelerations=[4, 8])
    masks = [func(368, seed=s) for s in range(30)]
    counts = {int(m.sum()) for m in masks}
    assert counts == {round(368 / 4), round(368 / 8)}
    assert np.array_equal(func(368, seed=7), func(368, seed=7))
    single = MaskFunc([0.08], [4], kind="equispaced")
    assert single(320, seed=1)[center_lines(320, 0.08)].all()


def test_apply_mask_zeroes_unsampled_columns():
    kspace = torch.randn(2, 3, 8, 16, dtype=torch.complex64)
    mask = make_mask(16, 4, 0.25, seed=0)
    out = apply_mask(kspace, mask)
    assert torch.equal(out[..., mask], kspace[..., mask])
    assert torch.count_nonzero(out[..., ~mask]) == 0
    with pytest.raises(ValueError, match="columns"):
        apply_mask(kspace, np.ones(15, dtype=bool))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"acceleration": 0.5}, "acceleration"),
        ({"acceleration": float("nan")}, "acceleration"),
        ({"center_fraction": 0.0}, "center_fraction"),
        ({"center_fraction": 1.5}, "center_fraction"),
        ({"center_fraction": -0.1}, "center_fraction"),
        ({"acceleration": 8, "center_fraction": 0.5}, "center_fraction"),  # 64 centre lines > 16
        ({"kind": "radial"}, "kind"),
        ({"num_cols": 1}, "num_cols"),
        ({"variable_density": -1.0}, "variable_density"),
        ({"kind": "equispaced", "variable_density": 2.0}, "variable_density"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, match):
    args = {"num_cols": 128, "acceleration": 4, "center_fraction": 0.08, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_mask(**args)


def test_too_many_centre_lines_message_gives_the_numbers():
    with pytest.raises(ValueError, match=r"64 centre lines, more than the 16 lines"):
        make_mask(128, 8, 0.5)


def test_mask_func_bad_inputs():
    with pytest.raises(ValueError, match="equal length"):
        MaskFunc([0.08, 0.04], [4])
    with pytest.raises(ValueError, match="acceleration"):
        MaskFunc([0.08], [0.5])
    with pytest.raises(ValueError, match="kind"):
        MaskFunc([0.08], [4], kind="spiral")


# --- fastMRI's call signature ------------------------------------------------------------------------
FASTMRI_KINDS = [RandomMaskFunc, EquispacedMaskFractionFunc, EquispacedMaskFunc,
                 lambda cf, r, **kw: ExactMaskFunc(cf, r, kind="random", **kw),
                 lambda cf, r, **kw: ExactMaskFunc(cf, r, kind="equispaced", **kw)]


@pytest.mark.parametrize("make", FASTMRI_KINDS)
@pytest.mark.parametrize("num_cols,cf", [(368, 0.08), (320, 0.04), (128, 0.08)])
def test_fastmri_signature_shape_centre_and_seeding(make, num_cols, cf):
    func = make([cf], [4 if cf == 0.08 else 8])
    mask, num_low = func((1, 640, num_cols, 2), seed=3)
    assert mask.shape == (1, 1, num_cols, 1) and mask.dtype == torch.float32
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0}
    start, stop = EXPECTED_CENTRE[(num_cols, cf)]
    assert num_low == stop - start and mask.reshape(-1)[start:stop].all()
    again, _ = func((1, 640, num_cols, 2), seed=3)
    assert torch.equal(mask, again)                                 # one seed, one mask
    assert any(not torch.equal(mask, func((1, 640, num_cols, 2), seed=s)[0]) for s in range(4, 8))
    name = tuple(map(ord, "file1000001.h5"))                        # fastMRI's per-volume seed
    assert torch.equal(func((1, num_cols, 1), seed=name)[0].reshape(-1), func((5, 640, num_cols, 2), seed=name)[0].reshape(-1))
    # a seeded call leaves the object's own stream where it was
    a, b = make([cf], [4], seed=11), make([cf], [4], seed=11)
    a((1, num_cols, 1), seed=99)
    assert torch.equal(a((1, num_cols, 1))[0], b((1, num_cols, 1))[0])
    with pytest.raises(ValueError, match="3 or more"):
        func((num_cols, 1))


def test_fastmri_signature_sampled_fractions():
    w, seeds = 368, range(40)
    frac = lambda func: np.mean([float(func((1, w, 1), seed=s)[0].mean()) for s in seeds])  # noqa: E731
    assert frac(RandomMaskFunc([0.08], [4])) == pytest.approx(0.25, abs=0.01)           # W / R on average
    assert frac(EquispacedMaskFractionFunc([0.08], [4])) == pytest.approx(0.25, abs=0.01)
    # fastMRI's equispaced: every 4th column on top of the centre, about 0.31 (the 0.309)
    assert frac(EquispacedMaskFunc([0.08], [4])) == pytest.approx(0.25 + 0.08 * 0.75, abs=0.005)
    counts = {int(RandomMaskFunc([0.08], [4])((1, w, 1), seed=s)[0].sum()) for s in seeds}
    assert len(counts) > 3                                         # a Bernoulli draw: the count varies
    exact = {int(ExactMaskFunc([0.08], [4])((1, w, 1), seed=s)[0].sum()) for s in seeds}
    assert exact == {round(w / 4)}                                 # mrtl's: exactly round(W / R)


def test_equispaced_offset_and_exact_mask_func_agrees_with_make_mask():
    for offset in range(4):
        m = EquispacedMaskFunc([0.08], [4])((1, 64, 1), offset=offset)[0].reshape(-1).numpy()
        outer = np.ones(64, bool)
        outer[center_lines(64, 0.08)] = False
        assert (m[offset::4] == 1).all() and not m[outer & (np.arange(64) % 4 != offset)].any()
    with pytest.raises(ValueError, match="integer"):
        EquispacedMaskFunc([0.08], [2.5])((1, 64, 1), seed=0)
    with pytest.raises(ValueError, match="offset"):
        ExactMaskFunc([0.08], [4], kind="equispaced")((1, 64, 1), offset=1)
    # the exact-count function is make_mask with a seed drawn from the call's seed
    got = ExactMaskFunc([0.08], [4], kind="equispaced")((1, 96, 1), seed=5)[0].reshape(-1).numpy().astype(bool)
    rng = np.random.RandomState(5)
    rng.randint(1)
    np.testing.assert_array_equal(got, make_mask(96, 4, 0.08, kind="equispaced", seed=int(rng.randint(2**31 - 1))))
    with pytest.raises(ValueError, match="equal length"):
        RandomMaskFunc([0.08, 0.04], [4])
    with pytest.raises(ValueError, match="center_fraction"):
        RandomMaskFunc([1.5], [4])
    with pytest.raises(ValueError, match="kind"):
        ExactMaskFunc([0.08], [4], kind="spiral")
