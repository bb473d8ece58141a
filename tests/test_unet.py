"""The U-Net against fastMRI's architecture: parameter count, names, shapes, gradients."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from mrtl_core.unet import Unet, count_parameters


def fastmri_param_count(in_chans: int, out_chans: int, chans: int, num_pool_layers: int) -> int:
    """Parameter count of fastMRI's U-Net re-derived by formula (bias-free 3x3 convs, affine-free
    instance norms, bias-free 2x2 transpose convs, a 1x1 output conv with bias)."""

    def conv_block(i: int, o: int) -> int:
        return 9 * i * o + 9 * o * o

    total, ch = conv_block(in_chans, chans), chans
    for _ in range(num_pool_layers - 1):
        total += conv_block(ch, 2 * ch)
        ch *= 2
    total += conv_block(ch, 2 * ch)  # bottleneck
    for _ in range(num_pool_layers):
        total += 4 * (2 * ch) * ch + conv_block(2 * ch, ch)  # transpose conv + conv block
        ch //= 2
    return total + chans * out_chans + out_chans  # 1x1 head with bias


def test_default_parameter_count_matches_fastmri():
    model = Unet(1, 1, chans=32, num_pool_layers=4)
    assert count_parameters(model) == 7_756_097  # fastMRI's published single-coil/RSS U-Net
    assert count_parameters(model) == fastmri_param_count(1, 1, 32, 4)


@pytest.mark.parametrize("chans,pools,in_chans,out_chans", [(16, 4, 1, 1), (8, 3, 2, 2), (4, 2, 1, 3)])
def test_parameter_count_by_formula(chans, pools, in_chans, out_chans):
    model = Unet(in_chans, out_chans, chans=chans, num_pool_layers=pools)
    assert count_parameters(model) == fastmri_param_count(in_chans, out_chans, chans, pools)


def test_chans16_is_about_a_quarter():
    # Every weight scales with chans**2 except the first conv (9 * 1 * chans) and the
    # head (chans + 1): (7,756,097 - 288 - 33) / 4 + 144 + 17.
    n = count_parameters(Unet(1, 1, chans=16))
    assert n == (7_756_097 - 9 * 32 - 33) // 4 + 9 * 16 + 17 == 1_939_105


def test_trainable_only_count():
    model = Unet(1, 1, chans=4, num_pool_layers=2)
    for p in model.down_sample_layers.parameters():
        p.requires_grad_(False)
    frozen = sum(p.numel() for p in model.down_sample_layers.parameters())
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - frozen


# fastMRI's state_dict for Unet(1, 1, chans=4, num_pool_layers=2), in fastMRI's key order.
# ConvTranspose2d weights are (in, out, kH, kW).
EXPECTED_STATE = [
    ("down_sample_layers.0.layers.0.weight", (4, 1, 3, 3)),
    ("down_sample_layers.0.layers.4.weight", (4, 4, 3, 3)),
    ("down_sample_layers.1.layers.0.weight", (8, 4, 3, 3)),
    ("down_sample_layers.1.layers.4.weight", (8, 8, 3, 3)),
    ("conv.layers.0.weight", (16, 8, 3, 3)),
    ("conv.layers.4.weight", (16, 16, 3, 3)),
    ("up_conv.0.layers.0.weight", (8, 16, 3, 3)),
    ("up_conv.0.layers.4.weight", (8, 8, 3, 3)),
    ("up_conv.1.0.layers.0.weight", (4, 8, 3, 3)),
    ("up_conv.1.0.layers.4.weight", (4, 4, 3, 3)),
    ("up_conv.1.1.weight", (1, 4, 1, 1)),
    ("up_conv.1.1.bias", (1,)),
    ("up_transpose_conv.0.layers.0.weight", (16, 8, 2, 2)),
    ("up_transpose_conv.1.layers.0.weight", (8, 4, 2, 2)),
]


def test_state_dict_names_and_shapes_match_fastmri():
    state = Unet(1, 1, chans=4, num_pool_layers=2).state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == EXPECTED_STATE


def test_fastmri_style_state_dict_loads_strictly():
    gen = torch.Generator().manual_seed(0)
    foreign = {k: torch.randn(shape, generator=gen) for k, shape in EXPECTED_STATE}
    model = Unet(1, 1, chans=4, num_pool_layers=2)
    model.load_state_dict(foreign, strict=True)
    assert torch.equal(model.up_conv[1][1].weight, foreign["up_conv.1.1.weight"])


def _reference_forward(state: dict, x: torch.Tensor, pools: int) -> torch.Tensor:
    """fastMRI's forward pass written functionally from the state_dict (an independent check
    of the layer order, the skip concatenation order and the odd-size reflect padding)."""

    def block(prefix: str, h: torch.Tensor) -> torch.Tensor:
        for i in (0, 4):
            h = F.conv2d(h, state[f"{prefix}layers.{i}.weight"], padding=1)
            h = F.leaky_relu(F.instance_norm(h), 0.2)
        return h

    skips = []
    for i in range(pools):
        x = block(f"down_sample_layers.{i}.", x)
        skips.append(x)
        x = F.avg_pool2d(x, 2)
    x = block("conv.", x)
    for i in range(pools):
        skip = skips.pop()
        x = F.conv_transpose2d(x, state[f"up_transpose_conv.{i}.layers.0.weight"], stride=2)
        x = F.leaky_relu(F.instance_norm(x), 0.2)
        pad = [0, 1 if x.shape[-1] != skip.shape[-1] else 0, 0, 1 if x.shape[-2] != skip.shape[-2] else 0]
        if sum(pad):
            x = F.pad(x, pad, mode="reflect")
        x = torch.cat([x, skip], dim=1)
        last = i == pools - 1
        x = block(f"up_conv.{i}.0." if last else f"up_conv.{i}.", x)
    return F.conv2d(x, state[f"up_conv.{pools - 1}.1.weight"], state[f"up_conv.{pools - 1}.1.bias"])


@pytest.mark.parametrize("size", [(32, 32), (37, 53), (17, 16)])
def test_forward_matches_functional_reference(size):
    torch.manual_seed(0)
    model = Unet(1, 2, chans=4, num_pool_layers=2).double().eval()
    x = torch.randn(2, 1, *size, dtype=torch.float64)
    with torch.no_grad():
        got = model(x)
        want = _reference_forward(model.state_dict(), x, pools=2)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("size", [(37, 53), (16, 32), (64, 48), (31, 33)])
def test_output_shape_equals_input_shape(size):
    model = Unet(1, 1, chans=4, num_pool_layers=4)
    x = torch.randn(3, 1, *size)
    assert model(x).shape == (3, 1, *size)


def test_multichannel_shapes():
    model = Unet(2, 3, chans=4, num_pool_layers=3)
    assert model(torch.randn(2, 2, 40, 24)).shape == (2, 3, 40, 24)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = Unet(1, 1, chans=4, num_pool_layers=3)
    x, y = torch.randn(2, 1, 37, 53), torch.randn(2, 1, 37, 53)
    F.l1_loss(model(x), y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_eval_is_deterministic_and_dropout_only_in_train():
    torch.manual_seed(0)
    model = Unet(1, 1, chans=4, num_pool_layers=2, drop_prob=0.5)
    x = torch.randn(2, 1, 24, 24)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


def test_batch_items_are_independent():
    # Instance norm (not batch norm): an image's output does not depend on its batch mates.
    torch.manual_seed(0)
    model = Unet(1, 1, chans=4, num_pool_layers=2).eval()
    x = torch.randn(3, 1, 20, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[1:2], model(x[1:2]), rtol=1e-5, atol=1e-6)


def test_float64_and_bfloat16_autocast():
    model = Unet(1, 1, chans=4, num_pool_layers=2)
    x = torch.randn(1, 1, 16, 16)
    assert model.double()(x.double()).dtype == torch.float64
    model.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == x.shape and torch.isfinite(out.float()).all()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"chans": 0}, "chans"),
        ({"num_pool_layers": 0}, "num_pool_layers"),
        ({"drop_prob": 1.0}, "drop_prob"),
        ({"in_chans": -1}, "in_chans"),
    ],
)
def test_bad_construction(kwargs, match):
    args = {"in_chans": 1, "out_chans": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        Unet(**args)


def test_bad_input_shapes():
    model = Unet(1, 1, chans=4, num_pool_layers=3)
    with pytest.raises(ValueError, match="N, 1, H, W"):
        model(torch.randn(1, 16, 16))
    with pytest.raises(ValueError, match="2\\*\\*num_pool_layers"):
        model(torch.randn(1, 1, 7, 32))
    with pytest.raises(ValueError, match="bottleneck would be 1x1"):
        model(torch.randn(1, 1, 8, 15))
