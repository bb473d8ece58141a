"""Brain subjects differ like people (issue 16, item 2), measured on what the phantom outputs.

``phantoms.brain`` draws every subject's choices from its generator. A generator that draws exactly
as the seed's would, but replaces one draw (the elastic field's amplitudes, or the ventricle gain),
gives the *same* subject with only that one difference, so each is measured alone:

* the elastic field by block matching (phase correlation of 32 x 32 blocks of the tissue image,
  no knowledge of how the field was made): its in-plane displacement must be millimetres, and most
  of it must be left after the best affine fit to the block shifts, i.e. not an affine map;
* the ventricles by the CSF area near the brain's centre, which must grow with the gain.

Inter-subject residuals after affine registration to a template are millimetres to about a
centimetre in the literature (larger at the cortex than in deep structures), and the lateral
ventricles' volume varies several-fold between healthy adults; the phantom's ranges (a few mm RMS,
ventricles x0.9 to x1.4 in linear size) are at the lower end of both, a smooth template's honest limit:
its subjects share the template's average folding.
"""
from __future__ import annotations

import numpy as np
import pytest

from mrtl_core.phantoms import brain

#: the two draws of ``brain_tissue_slices`` this test replaces, by their arguments
ELASTIC_DRAW = {"scale": 1.2, "size": (6, 3)}
VENTRICLE_DRAW = (-0.10, 0.30)


class OneDrawReplaced(np.random.Generator):
    """The seed's generator, except that the elastic amplitudes are zeroed (``elastic=False``) or the
    ventricle gain set (``ventricle=g``); the replaced draw is still drawn, so every later draw, and
    hence every other choice of the subject, is unchanged. ``hits`` names the draws it saw."""

    def __init__(self, seed: int, elastic: bool = True, ventricle: float | None = None):
        super().__init__(np.random.PCG64(seed))
        self.elastic, self.ventricle, self.hits = elastic, ventricle, set()

    def normal(self, loc=0.0, scale=1.0, size=None):
        out = super().normal(loc, scale, size)
        if scale == ELASTIC_DRAW["scale"] and size == ELASTIC_DRAW["size"]:
            self.hits.add("elastic")
            return out if self.elastic else np.zeros_like(out)
        return out

    def uniform(self, low=0.0, high=1.0, size=None):
        out = super().uniform(low, high, size)
        if (low, high) == VENTRICLE_DRAW and size is None:
            self.hits.add("ventricle")
            return out if self.ventricle is None else float(self.ventricle)
        return out


def _block_shifts(a: np.ndarray, b: np.ndarray, block: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Integer-pixel shift of ``a`` against ``b`` per half-overlapping block with structure in both,
    by phase correlation; returns (shifts (B, 2) in pixels, block centres (B, 2) in pixels)."""
    shifts, centres = [], []
    for i in range(0, a.shape[0] - block + 1, block // 2):
        for j in range(0, a.shape[1] - block + 1, block // 2):
            pa, pb = a[i:i + block, j:j + block], b[i:i + block, j:j + block]
            if pa.std() < 0.1 or pb.std() < 0.1:
                continue
            cross = np.fft.fft2(pa - pa.mean()) * np.conj(np.fft.fft2(pb - pb.mean()))
            peak = np.unravel_index(np.argmax(np.fft.ifft2(cross / (np.abs(cross) + 1e-9)).real), cross.shape)
            shifts.append([(p + block // 2) % block - block // 2 for p in peak])
            centres.append([i + block / 2, j + block / 2])
    return np.array(shifts, float), np.array(centres, float)


def _image(tissues: dict[str, np.ndarray], k: int) -> np.ndarray:
    """A grey/white contrast image of slice ``k`` (what the block matching follows)."""
    return tissues["grey_matter"][k] + 0.5 * tissues["white_matter"][k]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_elastic_field_moves_tissue_by_millimetres_and_not_affinely(seed):
    size = 256
    pixel_mm = brain.FOV_MM / size
    on, off = OneDrawReplaced(seed), OneDrawReplaced(seed, elastic=False)
    warped, plain = brain.brain_tissue_slices(on, 5, size), brain.brain_tissue_slices(off, 5, size)
    assert on.hits == off.hits == {"elastic", "ventricle"}, "the phantom no longer makes the draws this test replaces"
    shifts, centres = _block_shifts(_image(warped, 2), _image(plain, 2))
    assert len(shifts) > 50
    shifts_mm = shifts * pixel_mm
    rms = float(np.sqrt((shifts_mm**2).sum(1).mean()))
    design = np.c_[centres, np.ones(len(centres))]
    coef, *_ = np.linalg.lstsq(design, shifts_mm, rcond=None)
    residual = float(np.sqrt(((shifts_mm - design @ coef) ** 2).sum(1).mean()))
    assert 0.5 < rms < 6.0, f"seed {seed}: in-plane elastic displacement {rms:.2f} mm RMS"
    assert residual > 0.6 * rms, f"seed {seed}: {residual:.2f} of {rms:.2f} mm is not affine"
    # without the field the subject is otherwise the same: its head outline (all tissue) barely moves
    assert np.abs(warped["skin"].sum() - plain["skin"].sum()) < 0.1 * plain["skin"].sum()


@pytest.mark.parametrize("seed", [0, 3])
def test_ventricle_size_is_a_subject_property(seed):
    size, slices = 128, 24
    pixel_mm = brain.FOV_MM / size
    rows, cols = np.mgrid[:size, :size]
    central = np.hypot(rows - size / 2, cols - size / 2) * pixel_mm < 35.0   # the ventricles' neighbourhood

    def ventricle_area(gain: float) -> float:
        csf = brain.brain_tissue_slices(OneDrawReplaced(seed, ventricle=gain), slices, size)["csf"]
        return max(float((csf[k] * central).sum()) * pixel_mm**2 for k in range(slices))   # mm^2

    small, large = ventricle_area(VENTRICLE_DRAW[0]), ventricle_area(VENTRICLE_DRAW[1])
    assert large > 1.15 * small, f"seed {seed}: central CSF {small:.0f} -> {large:.0f} mm^2 across the gain's range"


def test_a_subject_is_the_same_from_the_same_seed_and_differs_from_another():
    a = brain.brain_tissue_slices(np.random.default_rng(7), 3, 64)
    b = brain.brain_tissue_slices(np.random.default_rng(7), 3, 64)
    c = brain.brain_tissue_slices(np.random.default_rng(8), 3, 64)
    assert all(np.array_equal(a[t], b[t]) for t in brain.TISSUES)
    assert not np.array_equal(a["grey_matter"], c["grey_matter"])
