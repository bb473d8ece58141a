"""Training-time augmentation that stays physically exact: mirror flips of a (zero-filled, target) pair.

A Cartesian U-Net sample is the magnitude (RSS) of the zero-filled coil images under a column mask,
paired with the fully sampled RSS. Mirroring the object along the readout axis leaves every
k-space column where it was; mirroring it along the phase-encoding axis mirrors the sampled columns
about the centre, which is another draw of the same random mask family (a variable-density mask
with a fully sampled centre is symmetric in distribution). The flipped pair is therefore exactly
the pair the scanner would have produced for the mirrored object under a mask it could have drawn
(up to a one-line shift of the mask for even sizes, from ``torch.flip`` mapping index ``i`` to
``n - 1 - i``, i.e. a linear phase in k-space that the magnitude does not see). Nothing is
re-simulated and no interpolation blurs the noise: what the network sees stays the scanner's.

Rotations by 90 degrees are *not* offered: they would turn the aliasing from the phase-encoding
axis to the readout axis, a scanner this data never comes from. Fabian, Heckel and Soltanolkotabi
(MRAugment, ICML 2021) augment the fully sampled image and re-simulate the undersampling, which
admits rotations and scalings; flips are the part of it that needs no re-simulation.
"""
from __future__ import annotations

import torch

__all__ = ["AUGMENTATIONS", "random_flips"]

#: what ``TrainConfig.augment`` accepts: ``"none"``, or ``"flips"`` (each training sample mirrored
#: up-down and left-right, each with probability 1/2, the same way for its input and target)
AUGMENTATIONS = ("none", "flips")


def random_flips(image: torch.Tensor, target: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror each sample of a batch along each image axis with probability 1/2.

    Args:
        image: ``(B, C, H, W)`` network inputs (normalised zero-filled magnitude images).
        target: ``(B, C', H, W)`` their targets; flipped exactly as their inputs.
        generator: the stream the flips are drawn from (two draws per sample: up-down, left-right),
            so a run's flips are reproducible and independent of the mask draws.

    Returns:
        ``(image, target)``, new tensors of the same shapes (the inputs are not modified). The
        per-sample normalisation (mean, std) is flip-invariant, so it carries over unchanged.
    """
    if image.ndim != 4 or target.ndim != 4 or image.shape[0] != target.shape[0] or image.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"random_flips needs (B, C, H, W) image and target of one batch and size, "
                         f"got {tuple(image.shape)} and {tuple(target.shape)}")
    flags = torch.rand(image.shape[0], 2, generator=generator) < 0.5
    image, target = image.clone(), target.clone()
    for i, (up_down, left_right) in enumerate(flags.tolist()):
        dims = [d for d, on in ((-2, up_down), (-1, left_right)) if on]
        if dims:
            image[i] = image[i].flip(dims)
            target[i] = target[i].flip(dims)
    return image, target
