"""The per-device precision choice: what each request gets, and that a run records what it ran in."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mrtl_core import experiment, precision
from mrtl_core.commands.train import amp_setting
from mrtl_core.train import TrainConfig, load_checkpoint, train
from mrtl_core.unet import Unet


def test_cpu_default_is_float32_whatever_the_cpu(monkeypatch):
    for native in (False, True):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
        p = precision.choose(True, "cpu")
        assert (p.autocast, p.dtype, p.scaler, p.name) == (False, torch.float32, False, "float32")
        assert precision.choose(False, "cpu").name == "float32"
        assert precision.choose("fp16", "cpu").name == "float32"   # no fp16 autocast on a CPU


def test_cpu_bf16_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    p = precision.choose("bf16", "cpu")
    assert p.name == "float32" and "lacks" in p.reason
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    p = precision.choose("bf16", "cpu")
    assert (p.autocast, p.dtype, p.scaler, p.name) == (True, torch.bfloat16, False, "bf16-autocast")


def test_other_devices_and_off():
    assert precision.choose(True, "mps").name == "float32"
    assert precision.choose(False, "cuda").name == "float32"   # no CUDA needed to decide "off"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_choices():
    auto = precision.choose(True, "cuda")
    if torch.cuda.is_bf16_supported():
        assert (auto.dtype, auto.scaler) == (torch.bfloat16, False)
    else:
        assert (auto.dtype, auto.scaler) == (torch.float16, True)
    fp16 = precision.choose("fp16", "cuda")
    assert (fp16.autocast, fp16.dtype, fp16.scaler) == (True, torch.float16, True)


def test_cpu_flags_agree_with_the_kernels_list():
    """Independent of the module's parser: the flags line read with a regular expression."""
    import re
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo")
    flags = re.search(r"^flags\s*:(.*)$", cpuinfo.read_text(), re.M)
    expected = bool(flags) and bool(re.search(r"\b(amx_bf16|avx512_bf16)\b", flags.group(1)))
    assert precision.cpu_has_native_bf16() is expected


@pytest.mark.parametrize("bad", [1, 0, "yes", None, "float32"])
def test_bad_requests_are_named(bad):
    with pytest.raises(ValueError, match="amp"):
        precision.choose(bad, "cpu")
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(epochs=1, amp=bad)


def test_environment_request(monkeypatch):
    monkeypatch.delenv("MRTL_AMP", raising=False)
    assert precision.requested() is True
    for raw, want in [("0", False), ("false", False), ("1", True), ("BF16", "bf16"), ("fp16", "fp16"), ("", True)]:
        monkeypatch.setenv("MRTL_AMP", raw)
        assert precision.requested() == want, raw
    monkeypatch.setenv("MRTL_AMP", "half")
    with pytest.raises(ValueError, match="MRTL_AMP='half'"):
        precision.requested()


def test_the_books_configs_and_the_cli_follow_the_request(monkeypatch):
    monkeypatch.delenv("MRTL_AMP", raising=False)
    default = experiment.pretrain_config("ci", progress=False)
    assert default.amp is True and amp_setting("auto") is True and amp_setting("off") is False
    monkeypatch.setenv("MRTL_AMP", "bf16")
    assert experiment.pretrain_config("ci", progress=False).amp == "bf16"
    assert experiment.finetune_config("ci", 4, 0, progress=False).amp == "bf16"
    assert amp_setting("auto") == "bf16"
    # another request is another model: the cache key changes with it
    assert experiment.model_key("ci", "pretrain", "brain-1.5T", 4, experiment.pretrain_config("ci", progress=False)) != \
        experiment.model_key("ci", "pretrain", "brain-1.5T", 4, default)


class _Pairs(torch.utils.data.Dataset):
    """A smoothing task on random 16x16 images: enough for a few optimiser steps."""

    def __init__(self, n: int = 8):
        from mrtl_core.data import UnetSample

        g = torch.Generator().manual_seed(0)
        target = torch.randn(n, 1, 16, 16, generator=g)
        image = target + 0.3 * torch.randn(n, 1, 16, 16, generator=g)
        self.items = [UnetSample(image=image[i], target=target[i], mean=torch.tensor(0.0), std=torch.tensor(1.0),
                                 max_value=torch.tensor(6.0), fname="p", slice_idx=i, subject="s") for i in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_a_run_records_its_precision_and_a_resume_its_change(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)   # bf16 autocast runs (emulated) anyway
    data = _Pairs()
    cfg = dict(batch_size=4, lr=1e-3, seed=0, progress=False, device="cpu")
    torch.manual_seed(0)
    model = Unet(chans=4, num_pool_layers=2)
    ckpt = tmp_path / "run.pt"
    first = train(model, data, data, TrainConfig(epochs=1, amp="bf16", **cfg), checkpoint_path=ckpt)
    assert first.precision == "bf16-autocast"
    assert load_checkpoint(ckpt)["precision"] == "bf16-autocast"
    assert np.isfinite(first.history[-1]["train_loss"])
    resumed = train(model, data, data, TrainConfig(epochs=2, amp=False, **cfg), checkpoint_path=ckpt)
    assert resumed.precision == "bf16-autocast, then float32"
    assert load_checkpoint(ckpt)["precision"] == "bf16-autocast, then float32"
    assert resumed.to_dict()["precision"] == resumed.precision    # what info.json and records carry
    plain = train(Unet(chans=4, num_pool_layers=2), data, None, TrainConfig(epochs=1, **cfg))
    assert plain.precision == "float32"
