"""Mirror-flip augmentation (``mrtl_core.augment``): exact for Cartesian data, reproducible, opt-in.

The physics claim is checked against a direct computation: the zero-filled RSS image of the mirrored
object under the mirrored column mask equals the mirrored zero-filled image of the original, for
random complex coil images and a random mask (numpy FFTs, no library code).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mrtl_core import experiment as ex
from mrtl_core.augment import random_flips
from mrtl_core.profiles import get_profile
from mrtl_core.train import TrainConfig


def _zero_filled_rss(coils: np.ndarray, mask: np.ndarray) -> np.ndarray:
    kspace = np.fft.fft2(coils) * mask[None, None, :]
    return np.sqrt((np.abs(np.fft.ifft2(kspace)) ** 2).sum(0))


@pytest.mark.parametrize("axis", [1, 2])   # readout (rows) and phase encoding (the masked columns)
def test_a_flipped_pair_is_the_scanners_pair_for_the_mirrored_object(axis):
    rng = np.random.default_rng(0)
    coils = rng.standard_normal((4, 24, 20)) + 1j * rng.standard_normal((4, 24, 20))
    mask = rng.random(20) < 0.3
    mask[:3] = mask[-2:] = True                    # a fully sampled centre (unshifted indices)
    # mirroring x[i] -> x[n-1-i] maps k-space index k to -k (times a phase the magnitude drops):
    # readout mirroring keeps the columns, phase-encoding mirroring mirrors the mask about k = 0
    mirrored_mask = mask if axis == 1 else mask[(-np.arange(20)) % 20]
    direct = _zero_filled_rss(np.flip(coils, axis), mirrored_mask)
    np.testing.assert_allclose(direct, np.flip(_zero_filled_rss(coils, mask), axis - 1), rtol=1e-10, atol=1e-12)
    assert mirrored_mask.sum() == mask.sum()       # as many lines: the same acceleration


def test_random_flips_mirrors_input_and_target_alike_and_reproducibly():
    image = torch.randn(64, 1, 6, 5)
    target = image * 2 + 1                          # target is a function of the input, pixel by pixel
    out_i, out_t = random_flips(image, target, torch.Generator().manual_seed(3))
    assert torch.equal(out_t, out_i * 2 + 1)         # the same flip for both
    assert torch.equal(image * 2 + 1, target)       # the inputs were not modified
    seen = set()
    for i in range(64):
        matches = [dims for dims in ([], [-2], [-1], [-2, -1]) if torch.equal(out_i[i], image[i].flip(dims) if dims else image[i])]
        assert len(matches) == 1
        seen.add(tuple(matches[0]))
    assert len(seen) == 4                           # each of the four mirrorings occurs
    again = random_flips(image, target, torch.Generator().manual_seed(3))
    assert torch.equal(again[0], out_i) and torch.equal(again[1], out_t)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        random_flips(image[0], target[0], torch.Generator())


def test_augment_is_opt_in_validated_and_keeps_the_cache_keys():
    standard = get_profile("standard")
    base = ex.finetune_config(standard, 5, 0)
    assert base.augment == "none"
    assert "augment" not in ex.model_key(standard, "finetune", "knee-1.5T", 4, base)["train"]   # the keys cached before stay
    flips, _ = ex.recipe_config(standard, 5, 0, "flips")
    long, _ = ex.recipe_config(standard, 5, 0, "long")
    assert flips.augment == "flips" and TrainConfig(**{**flips.to_dict(), "augment": "none"}) == long
    assert ex.model_key(standard, "finetune", "knee-1.5T", 4, flips)["train"]["augment"] == "flips"
    with pytest.raises(ValueError, match="augment must be one of"):
        TrainConfig(augment="rotate")
