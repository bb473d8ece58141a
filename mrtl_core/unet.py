"""The fastMRI U-Net (Ronneberger et al. 2015, as configured by Zbontar et al. 2018).

Encoder: ``num_pool_layers`` :class:`ConvBlock` levels, each followed by 2x2 average pooling,
the channel count doubling per level from ``chans``; a bottleneck :class:`ConvBlock` (``conv``).
Decoder: per level a :class:`TransposeConvBlock` (2x up-sampling), concatenation with the skip
connection, and a :class:`ConvBlock`; the last level ends in a 1x1 convolution (with bias) to
``out_chans``.

Parameter names and shapes are exactly fastMRI's (``down_sample_layers``, ``conv``,
``up_transpose_conv``, ``up_conv``, each block's ``layers``), so the ``state_dict`` of a
``fastmri.models.Unet`` checkpoint loads unchanged. The default configuration
(``in_chans=out_chans=1, chans=32, num_pool_layers=4``) has 7,756,097 parameters.

Odd sizes are handled the way fastMRI handles them, so a loaded checkpoint gives fastMRI's
output for every input size: average pooling floors the size, and on the way up an output one
pixel short of its skip connection is reflect-padded by one pixel on the right/bottom. Each
spatial size must be at least ``2 ** num_pool_layers``, and the bottleneck
``(H // 2**num_pool_layers, W // 2**num_pool_layers)`` must hold at least 2 pixels for instance
norm (a 320x320 fastMRI image gives 20x20).

No dtype or device is hard-coded: move the module with ``.to(...)`` and run it under
``torch.autocast`` for mixed precision.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Unet", "ConvBlock", "TransposeConvBlock", "count_parameters"]


class ConvBlock(nn.Module):
    """Two ``[3x3 conv (no bias), InstanceNorm2d, LeakyReLU(0.2), Dropout2d]`` stages.

    Shapes: ``(N, in_chans, H, W)`` -> ``(N, out_chans, H, W)``.
    """

    def __init__(self, in_chans: int, out_chans: int, drop_prob: float = 0.0):
        super().__init__()
        self.in_chans = in_chans
        self.out_chans = out_chans
        self.drop_prob = drop_prob
        # Indices 0..7 are part of the checkpoint format (layers.0.weight, layers.4.weight).
        self.layers = nn.Sequential(
            nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Dropout2d(drop_prob),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Dropout2d(drop_prob),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, in_chans, H, W)`` -> ``(N, out_chans, H, W)``."""
        return self.layers(image)


class TransposeConvBlock(nn.Module):
    """2x up-sampling: ``ConvTranspose2d(k=2, s=2, no bias)``, InstanceNorm2d, LeakyReLU(0.2).

    Shapes: ``(N, in_chans, H, W)`` -> ``(N, out_chans, 2H, 2W)``.
    """

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__()
        self.in_chans = in_chans
        self.out_chans = out_chans
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, in_chans, H, W)`` -> ``(N, out_chans, 2H, 2W)``."""
        return self.layers(image)


class Unet(nn.Module):
    """fastMRI's U-Net for image-domain reconstruction.

    Args:
        in_chans: channels of the input (1 for a magnitude image).
        out_chans: channels of the output.
        chans: channels of the first level; level ``i`` has ``chans * 2**i``.
        num_pool_layers: number of down-sampling (and up-sampling) levels.
        drop_prob: ``Dropout2d`` probability after every convolution stage.

    Shapes: ``(N, in_chans, H, W)`` -> ``(N, out_chans, H, W)`` for any ``H, W`` whose
    bottleneck ``(H // 2**num_pool_layers) x (W // 2**num_pool_layers)`` has >= 2 pixels.
    """

    def __init__(
        self,
        in_chans: int = 1,
        out_chans: int = 1,
        chans: int = 32,
        num_pool_layers: int = 4,
        drop_prob: float = 0.0,
    ):
        super().__init__()
        for name, value in (("in_chans", in_chans), ("out_chans", out_chans), ("chans", chans)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(num_pool_layers, int) or num_pool_layers < 1:
            raise ValueError(f"num_pool_layers must be an integer >= 1, got {num_pool_layers!r}")
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must lie in [0, 1), got {drop_prob!r}")
        self.in_chans = in_chans
        self.out_chans = out_chans
        self.chans = chans
        self.num_pool_layers = num_pool_layers
        self.drop_prob = drop_prob

        self.down_sample_layers = nn.ModuleList([ConvBlock(in_chans, chans, drop_prob)])
        ch = chans
        for _ in range(num_pool_layers - 1):
            self.down_sample_layers.append(ConvBlock(ch, 2 * ch, drop_prob))
            ch *= 2
        self.conv = ConvBlock(ch, 2 * ch, drop_prob)  # bottleneck

        # Registered in fastMRI's order so that even the state_dict key order is identical.
        self.up_conv = nn.ModuleList()
        self.up_transpose_conv = nn.ModuleList()
        for level in range(num_pool_layers):
            self.up_transpose_conv.append(TransposeConvBlock(2 * ch, ch))
            block = ConvBlock(2 * ch, ch, drop_prob)  # input: up-sampled + skip, concatenated
            if level == num_pool_layers - 1:
                # The output head: fastMRI nests it as up_conv[-1] = Sequential(ConvBlock, 1x1 conv).
                block = nn.Sequential(block, nn.Conv2d(ch, out_chans, kernel_size=1, stride=1))
            self.up_conv.append(block)
            ch //= 2

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, in_chans, H, W)`` -> ``(N, out_chans, H, W)``."""
        if image.ndim != 4 or image.shape[1] != self.in_chans:
            raise ValueError(
                f"image must have shape (N, {self.in_chans}, H, W), got {tuple(image.shape)}"
            )
        factor = 2**self.num_pool_layers
        height, width = image.shape[-2] // factor, image.shape[-1] // factor
        if height < 1 or width < 1 or height * width < 2:
            raise ValueError(
                f"image spatial size {tuple(image.shape[-2:])} is too small for "
                f"2**num_pool_layers = {factor}: the bottleneck would be {height}x{width}, and "
                "instance norm needs at least 2 pixels"
            )
        skips = []
        output = image
        for layer in self.down_sample_layers:
            output = layer(output)
            skips.append(output)
            output = F.avg_pool2d(output, kernel_size=2, stride=2, padding=0)
        output = self.conv(output)

        for transpose_conv, conv in zip(self.up_transpose_conv, self.up_conv):
            skip = skips.pop()
            output = transpose_conv(output)
            # Pooling floored an odd size; restore the lost pixel as fastMRI does (reflect,
            # right/bottom). Python ints here keep the graph free of host tensors (torch.compile).
            pad_w = skip.shape[-1] - output.shape[-1]
            pad_h = skip.shape[-2] - output.shape[-2]
            if pad_w or pad_h:
                output = F.pad(output, [0, pad_w, 0, pad_h], mode="reflect")
            output = conv(torch.cat([output, skip], dim=1))
        return output


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
