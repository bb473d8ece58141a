"""Training loop, checkpoints, fine-tuning strategies and evaluation on tiny fastMRI-layout files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mrtl_core import metrics
from mrtl_core.data import SliceDataset, write_fastmri_file
from mrtl_core.fft import fft2c_np
from mrtl_core.evaluate import evaluate
from mrtl_core.stats import paired_difference, summarise
from mrtl_core.train import (
    FROZEN_SETS,
    PROBE_FRACTION,
    STRATEGIES,
    TrainConfig,
    apply_strategy,
    fine_tune,
    layer_groups,
    load_model,
    train,
    validate,
)
from mrtl_core.unet import Unet

SIZE = 32
COILS = 4


def _subject(rng: np.random.Generator, num_slices: int) -> tuple[np.ndarray, np.ndarray]:
    """Ellipses inside a disc, 4 Gaussian coil maps (normalised), readout oversampled 2x."""
    hk, wk = 2 * SIZE, SIZE
    y, x = np.mgrid[-1:1:hk * 1j, -1:1:wk * 1j]
    y = y * 2  # the object fills the central half of the oversampled readout
    kspace, maps_all = [], []
    centres = [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    maps = np.stack([np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 1.5) * np.exp(1j * 0.3 * c) for c, (cx, cy) in enumerate(centres)])
    maps = maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    for _ in range(num_slices):
        img = (x**2 + y**2 < 0.7).astype(float) * 0.5
        for _ in range(3):
            cx, cy, r = rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), rng.uniform(0.08, 0.25)
            img += ((x - cx) ** 2 + (y - cy) ** 2 < r**2) * rng.uniform(0.2, 0.6)
        coil = maps * img
        k = fft2c_np(coil) + 0.002 * (rng.standard_normal(coil.shape) + 1j * rng.standard_normal(coil.shape))
        kspace.append(k)
        maps_all.append(maps)
    return np.stack(kspace).astype(np.complex64), np.stack(maps_all).astype(np.complex64)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """32x32 images gain nothing from threads, and on a busy machine threads wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    paths = []
    for s in range(4):
        k, m = _subject(rng, 4)
        paths.append(write_fastmri_file(
            root / f"s{s}.h5", k, field_strength_T=1.5, fov_mm=(220, 220, 5), recon_size=(SIZE, SIZE),
            patient_id=f"p{s}", acquisition="test", sens_maps=m))
    return paths


def _sets(files):
    train_set = SliceDataset(files[:2], acceleration=4, seed_masks=False)
    val_set = SliceDataset(files[2:3], acceleration=4, seed_masks=True)
    test_set = SliceDataset(files[3:], acceleration=4, seed_masks=True, with_kspace=True)
    return train_set, val_set, test_set


def _model(seed=0, chans=4):
    torch.manual_seed(seed)
    return Unet(chans=chans, num_pool_layers=2)


def _cfg(**kw):
    base = dict(epochs=2, batch_size=4, lr=3e-3, seed=1, progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_loss_falls(files):
    train_set, val_set, _ = _sets(files)
    model = _model()
    result = train(model, train_set, val_set, _cfg(epochs=8))
    assert result.steps == 8 * 2
    assert result.history[-1]["train_loss"] < 0.7 * result.history[0]["train_loss"]
    assert min(result.val_loss) < result.history[0]["val_loss"]
    assert result.best_epoch == int(np.argmin(result.val_loss)) + 1


def test_deterministic_with_seed(files):
    train_set, val_set, _ = _sets(files)
    a, b = _model(), _model()
    ra = train(a, train_set, val_set, _cfg())
    rb = train(b, train_set, val_set, _cfg())
    assert ra.train_loss == rb.train_loss
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    c = _model()
    rc = train(c, train_set, val_set, _cfg(seed=2))
    assert rc.train_loss != ra.train_loss  # the seed matters (masks and order)


def test_resume_is_bit_identical(files, tmp_path):
    train_set, val_set, _ = _sets(files)
    full = _model()
    r_full = train(full, train_set, val_set, _cfg(epochs=3))

    part = _model()
    ckpt = tmp_path / "run.pt"
    train(part, train_set, val_set, _cfg(epochs=1), checkpoint_path=ckpt)
    resumed = _model(seed=123)  # different init: everything must come from the checkpoint
    r_res = train(resumed, train_set, val_set, _cfg(epochs=3), checkpoint_path=ckpt)
    assert r_res.history == [dict(h, seconds=r) for h, r in zip(r_full.history, [h["seconds"] for h in r_res.history])]
    assert r_res.steps == r_full.steps and r_res.best_epoch == r_full.best_epoch
    for (k, va), vb in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(va, vb), k
    loaded = load_model(ckpt)
    for (k, va), vb in zip(full.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(va, vb), k


def test_wrong_architecture_checkpoint_names_file(files, tmp_path):
    train_set, val_set, _ = _sets(files)
    ckpt = tmp_path / "arch.pt"
    train(_model(chans=4), train_set, None, _cfg(epochs=1), checkpoint_path=ckpt)
    with pytest.raises(ValueError, match=r"arch\.pt.*chans: checkpoint 4 vs model 6"):
        train(_model(chans=6), train_set, None, _cfg(epochs=2), checkpoint_path=ckpt)
    with pytest.raises(ValueError, match="arch.pt"):
        train(Unet(chans=4, num_pool_layers=3), train_set, None, _cfg(epochs=2), checkpoint_path=ckpt)


def test_early_stopping_restores_best(files):
    train_set, val_set, _ = _sets(files)
    model = _model()
    # min_delta larger than any change: no epoch after the first counts as an improvement.
    result = train(model, train_set, val_set, _cfg(epochs=20, patience=1, min_delta=10.0))
    assert result.stopped_early and result.epochs == 3 and result.best_epoch == 1
    assert result.history[-1]["val_loss"] != result.best_value
    again = validate(model, val_set, _cfg())
    assert set(again) == {"val_loss"} and again["val_loss"] == pytest.approx(result.best_value, rel=1e-6)
    assert not model.training  # validate restores the mode train left it in (eval)


def test_validate_start_keeps_the_start_when_no_step_helps(files):
    train_set, val_set, _ = _sets(files)
    start = _model()
    train(start, train_set, val_set, _cfg(epochs=3))          # a reasonable starting point
    before = {k: v.clone() for k, v in start.state_dict().items()}
    # a learning rate that wrecks the weights: no later round can validate better than the start
    result = fine_tune(start, train_set, val_set, _cfg(epochs=3, lr=10.0, validate_start=True))
    assert result.best_epoch == 0 and result.history[0]["epoch"] == 0 and result.history[0]["step"] == 0
    assert all(row["val_loss"] > result.best_value for row in result.history[1:])
    for k, v in start.state_dict().items():
        assert torch.equal(v, before[k]), k
    # without it, the same run keeps the best of the wrecked epochs
    again = _model()
    train(again, train_set, val_set, _cfg(epochs=3))
    result = fine_tune(again, train_set, val_set, _cfg(epochs=3, lr=10.0))
    assert result.best_epoch >= 1
    assert any(not torch.equal(v, before[k]) for k, v in again.state_dict().items())


def _expected_trainable(names, strategy, num_pool):
    if strategy == "end-to-end":
        return set(names)
    if strategy == "frozen-encoder":
        return {n for n in names if n.split(".")[0] in ("up_conv", "up_transpose_conv")}
    return {n for n in names if n.startswith(f"up_conv.{num_pool - 1}.")}


@pytest.mark.parametrize("strategy", FROZEN_SETS)
def test_strategies_freeze_exactly(files, strategy):
    train_set, val_set, _ = _sets(files)
    model = _model()
    names = [n for n, _ in model.named_parameters()]
    trainable = set(apply_strategy(model, strategy))
    assert trainable == _expected_trainable(names, strategy, 2)
    assert trainable == {n for n, p in model.named_parameters() if p.requires_grad}
    if strategy == "last-layers":  # the two 3x3 convs and the 1x1 output conv (weight + bias)
        assert trainable == {"up_conv.1.0.layers.0.weight", "up_conv.1.0.layers.4.weight", "up_conv.1.1.weight", "up_conv.1.1.bias"}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fine_tune(model, train_set, val_set, _cfg(epochs=1, max_steps=1, lr=1e-2), strategy=strategy)
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        assert changed == (n in trainable), n
        assert p.requires_grad  # unfrozen again afterwards
    with pytest.raises(ValueError, match="strategy"):
        apply_strategy(model, "frozen-decoder")


def test_evaluation_equals_metrics_module(files):
    _, _, test_set = _sets(files)
    model = _model()
    res = evaluate(model, test_set, batch_size=3, device="cpu", examples=(0, 2))
    assert len(res.slices) == len(test_set) == 4
    # Independent recomputation: un-normalise by hand, batched metrics calls.
    preds, targets, ranges = [], [], []
    with torch.no_grad():
        for i in range(len(test_set)):
            s = test_set[i]
            out = model(s.image[None])[0, 0].double()
            preds.append((out * s.std.double() + s.mean.double()).numpy())
            targets.append(s.target_raw.double().numpy())
            ranges.append(float(s.max_value))
    p, t, dr = np.stack(preds), np.stack(targets), np.array(ranges)
    fg = metrics.foreground_mask(t)
    # evaluate() runs the network in batches of 3, this recomputation one slice at a time: float32
    # kernels may round the two differently (seen with ATEN_CPU_CAPABILITY=default: 5e-8 on an SSIM
    # of -0.029 from the untrained network, 1.6e-6 relative), so SSIM near zero gets an absolute floor
    ssim_tol = dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res.metrics["ssim"], metrics.ssim(p, t, data_range=dr), **ssim_tol)
    np.testing.assert_allclose(res.metrics["psnr"], metrics.psnr(p, t, data_range=dr), rtol=1e-6)
    np.testing.assert_allclose(res.metrics["rmse"], metrics.rmse(p, t), rtol=1e-6)
    np.testing.assert_allclose(res.metrics["nmse"], metrics.nmse(p, t), rtol=1e-6)
    np.testing.assert_allclose(res.metrics["ssim_fg"], metrics.ssim(p, t, data_range=dr, mask=fg), **ssim_tol)
    np.testing.assert_allclose(res.metrics["rmse_fg"], metrics.rmse(p, t, mask=fg), rtol=1e-6)
    assert set(res.examples) == {0, 2}
    np.testing.assert_allclose(res.examples[2]["pred"], p[2], rtol=1e-5, atol=1e-6)
    # the target is the stored reconstruction_rss, which equals un-normalising the clamped target here
    s = test_set[1]
    np.testing.assert_allclose(t[1], (s.target[0] * s.std + s.mean).numpy(), rtol=1e-4, atol=1e-5)


def test_zero_filled_and_cg_sense(files):
    pytest.importorskip("mrtl_core.sense")
    _, _, test_set = _sets(files)
    zf = evaluate("zero-filled", test_set)
    oracle = evaluate("cg-sense", test_set, cg_iters=20, maps_method="true")
    assert zf.method == "zero-filled" and oracle.method == "cg-sense (true maps)"
    # With the true maps (an oracle), CG-SENSE must beat zero-filling clearly at R = 4.
    assert oracle.mean("ssim_fg") > zf.mean("ssim_fg") + 0.05
    assert oracle.mean("nmse") < zf.mean("nmse")
    d, lo, hi = paired_difference(oracle, zf, "psnr")
    assert lo <= d <= hi and lo > 0
    # The default baseline never reads the stored maps: it estimates them from the acquired ACS lines,
    # so it scores exactly as on the same samples with the maps removed.
    r2 = SliceDataset(files[3:], acceleration=2, center_fraction=0.25, with_kspace=True)
    with_maps = [r2[i] for i in range(2)]
    no_maps = [s._replace(sens_maps=None) for s in with_maps]
    scanner = evaluate("cg-sense", with_maps, cg_iters=20)
    assert scanner.method == "cg-sense"
    np.testing.assert_array_equal(scanner.metrics["ssim_fg"], evaluate("cg-sense", no_maps, cg_iters=20).metrics["ssim_fg"])
    esp = evaluate("cg-sense", no_maps, cg_iters=20, maps_method="lowres")
    oracle2 = evaluate("cg-sense", with_maps, cg_iters=20, maps_method="true")
    assert oracle2.mean("ssim_fg") > esp.mean("ssim_fg") > 0.5  # the true maps win; estimated ones work
    # the scanner's maps come from a 24-column calibration scan (ESPIRiT): CG-SENSE with them must
    # beat zero-filling on the same slices, as the oracle does
    zf2 = evaluate("zero-filled", no_maps)
    assert scanner.mean("ssim_fg") > zf2.mean("ssim_fg") > 0.5 and scanner.mean("nmse_fg") < zf2.mean("nmse_fg")
    assert esp.mean("nmse_fg") < 0.1
    with pytest.raises(ValueError, match="sens_maps"):
        evaluate("cg-sense", no_maps, cg_iters=20, maps_method="true")
    with pytest.raises(ValueError, match="maps_method"):
        evaluate("cg-sense", no_maps, cg_iters=20, maps_method="oracle")
    with pytest.raises(ValueError, match="with_kspace"):
        evaluate("cg-sense", SliceDataset(files[3:], acceleration=4))
    with pytest.raises(ValueError, match="reconstruct"):
        evaluate("sense", test_set)


def test_summary_confidence_interval():
    from scipy import stats

    values = np.array([0.8, 0.82, 0.79, 0.85, 0.81])
    s = summarise(values)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert s["ci_low"] == pytest.approx(lo) and s["ci_high"] == pytest.approx(hi)
    assert s["std"] == pytest.approx(values.std(ddof=1))


def test_config_validation():
    with pytest.raises(ValueError, match="epochs or max_steps"):
        TrainConfig(epochs=None, max_steps=None)
    with pytest.raises(ValueError, match="monitor"):
        TrainConfig(monitor="psnr")


def test_forward_batch_takes_fastmri_samples_too():
    """The loop reads fields, not keys: fastMRI's own UnetSample batches (collate) and runs through it."""
    transforms = pytest.importorskip("fastmri.data.transforms")
    from mrtl_core.data import collate
    from mrtl_core.train import forward_batch

    samples = [transforms.UnetSample(image=torch.full((1, 8, 8), float(i)), target=torch.zeros(1, 8, 8),
                                     mean=torch.tensor(0.0), std=torch.tensor(1.0), fname="f.h5", slice_num=i,
                                     max_value=1.0) for i in range(3)]
    batch = collate(samples)
    assert type(batch) is transforms.UnetSample and batch.slice_num.tolist() == [0, 1, 2]
    output, target = forward_batch(torch.nn.Identity(), batch, torch.device("cpu"))
    assert output.shape == target.shape == (3, 1, 8, 8) and output[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0]


def test_unwritable_checkpoint_path_fails_before_training(files, tmp_path):
    train_set, _, _ = _sets(files)
    (tmp_path / "plain.txt").write_text("not a directory")
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="plain.txt' is a file, not a directory"):
        train(model, train_set, None, _cfg(), checkpoint_path=tmp_path / "plain.txt" / "sub" / "c.pt")
    with pytest.raises(ValueError, match="is a directory, expected a file path"):
        train(model, train_set, None, _cfg(), checkpoint_path=tmp_path)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # no step was taken


def test_cli_train_finetune_evaluate(files, tmp_path, capsys):
    import json

    from mrtl_core.cli import main

    for name, chosen in (("train", files[:2]), ("val", files[2:3]), ("test", files[3:])):
        (tmp_path / "data" / name).mkdir(parents=True)
        for f in chosen:
            (tmp_path / "data" / name / f.name).symlink_to(f)
    common = ["--data-dir", str(tmp_path / "data"), "--profile", "ci", "--device", "cpu", "--quiet"]
    assert main(["train", *common, "--chans", "4", "--num-pool-layers", "2", "--epochs", "2", "--batch-size", "4",
                 "--checkpoint", str(tmp_path / "a.pt"), "--out", str(tmp_path / "a.json")]) == 0
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["result"]["steps"] == 4 and a["train_slices"] == 8
    assert main(["finetune", *common, "--init", str(tmp_path / "a.pt"), "--n-slices", "3", "--max-steps", "3",
                 "--strategy", "last-layers", "--checkpoint", str(tmp_path / "b.pt"), "--out", str(tmp_path / "b.json")]) == 0
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["n_slices"] == 3 and b["result"]["steps"] == 3 and b["strategy"] == "last-layers"
    assert main(["evaluate", *common, "--checkpoint", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"),
                 "--methods", "zero-filled", "--out", str(tmp_path / "e.json")]) == 0
    e = json.loads((tmp_path / "e.json").read_text())
    assert [r["method"] for r in e["results"]] == ["zero-filled", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]
    assert len(e["results"][0]["per_slice"]["ssim"]) == 4
    assert "SSIM" in capsys.readouterr().out


def test_a_sigterm_swallowed_by_a_weakref_callback_still_stops_training(files, monkeypatch):
    """CI once ran a SIGTERM'd ``train`` for 240 s: the handler's raise landed in a weakref callback,
    where Python prints "Exception ignored" and goes on. The recorded request must stop the loop."""
    import gc
    import sys
    import weakref

    from mrtl_core import cli, stop

    class Owner:
        pass

    train_set, val_set, _ = _sets(files)
    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: swallowed.append(u.exc_type))
    owner = Owner()
    ref = weakref.ref(owner, lambda _: cli.handle_sigterm(15, None))  # the handler, where raises are ignored
    del owner
    gc.collect()
    assert swallowed == [cli.Terminated] and ref() is None    # Python swallowed the raise, as in the CI run
    assert stop.pending() is cli.Terminated
    with pytest.raises(cli.Terminated):
        train(_model(), train_set, None, _cfg(epochs=50))   # no validation: the step loop's own check
    assert stop.pending() is None                     # answered once: the next run is not stopped
    assert train(_model(), train_set, None, _cfg(epochs=1)).steps == 2


def test_a_swallowed_stop_prints_nothing_while_other_unraisables_still_reach_the_hook(monkeypatch):
    """CI's SIGTERM test saw the run stop but its stderr carry Python's "Exception ignored in ..."
    traceback above the one-line resume hint. Within a command the recorded stop is silent; any
    other exception an ignoring frame swallows still goes to the hook that was there before."""
    import gc
    import sys
    import weakref

    from mrtl_core import cli, stop

    class Owner:
        pass

    def swallow(callback) -> None:
        owner = Owner()
        ref = weakref.ref(owner, lambda _: callback())
        del owner
        gc.collect()
        assert ref() is None

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))
    stop.clear()
    try:
        with stop.quiet_swallowed_stops():
            swallow(lambda: cli.handle_sigterm(15, None))
            assert seen == [] and stop.pending() is cli.Terminated   # silent, and still recorded
            swallow(lambda: 1 / 0)
            assert seen == [ZeroDivisionError]                       # not a stop: reported as before
        stop.clear()
        swallow(lambda: cli.handle_sigterm(15, None))               # outside a command: Python's default
        assert seen == [ZeroDivisionError, cli.Terminated]
        assert sys.unraisablehook is not None and stop.pending() is cli.Terminated
    finally:
        stop.clear()



# --------------------------------------------------------------------------------------------
# fine-tuning recipes: layer-wise learning rates, warm-up + cosine, L2-SP, linear probe then fine-tune
# --------------------------------------------------------------------------------------------
def _deltas(before, model):
    return {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}


def test_layer_groups_cover_every_parameter_once_by_level():
    model = _model()   # 2 pooling levels: decoder 0 -> depth 1, decoder 1 -> 0, bottleneck 2, encoder i -> 4 - i
    groups = layer_groups(model, list(model.parameters()), lr=1e-3, decay=0.5)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    depth_of = {id(p): g["depth"] for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        head, index = name.split(".")[0], (int(name.split(".")[1]) if not name.startswith("conv.") else None)
        expected = {"up_conv": 1 - (index or 0), "up_transpose_conv": 1 - (index or 0), "conv": 2,
                    "down_sample_layers": 4 - (index or 0)}[head]
        assert depth_of[id(p)] == expected, name
    assert [g["lr"] for g in groups] == pytest.approx([1e-3 * 0.5**g["depth"] for g in groups])
    with pytest.raises(ValueError, match="U-Net"):
        layer_groups(torch.nn.Linear(2, 2), [], 1e-3, 0.5)


def test_layer_lr_decay_moves_each_level_by_its_rate(files):
    """Adam's first step moves every weight by lr * g / (|g| + eps), about lr: so each level's largest
    change after one step is its own rate, decay**depth of the output's (an independent reference)."""
    train_set, _, _ = _sets(files)
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lr, decay = 1e-3, 0.5
    train(model, train_set, None, _cfg(epochs=1, max_steps=1, lr=lr, layer_lr_decay=decay))
    depth = {id(p): g["depth"] for g in layer_groups(model, list(model.parameters()), lr, decay) for p in g["params"]}
    moved = _deltas(before, model)
    for name, p in model.named_parameters():
        if name.endswith(".weight") and p.dim() == 4:   # conv weights: many elements, some with |g| >> eps
            assert moved[name] == pytest.approx(lr * decay ** depth[id(p)], rel=1e-3), name


def test_warmup_cosine_rates_follow_the_formula(files):
    train_set, _, _ = _sets(files)
    lr, warmup, total = 1e-3, 3, 10
    result = train(_model(), train_set, None, _cfg(epochs=None, max_steps=total, steps_per_epoch=1, lr=lr,
                                                   schedule="warmup-cosine", warmup_steps=warmup))
    expected = [lr * (k + 1) / warmup if k < warmup else lr * 0.5 * (1 + np.cos(np.pi * (k - warmup) / (total - warmup)))
                for k in range(total)]
    assert [row["lr"] for row in result.history] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="warmup_steps=3 needs schedule='warmup-cosine'"):
        _cfg(warmup_steps=3)
    with pytest.raises(ValueError, match="schedule"):
        _cfg(schedule="linear")


def test_l2sp_pulls_towards_the_start_and_resumes_with_the_same_anchor(files, tmp_path):
    train_set, _, _ = _sets(files)
    start = _model()
    w0 = torch.cat([p.detach().flatten() for p in start.parameters()])

    def distance(l2sp, steps=12):
        model = _model()
        train(model, train_set, None, _cfg(epochs=None, max_steps=steps, steps_per_epoch=2, lr=3e-3, l2sp=l2sp))
        return (torch.cat([p.detach().flatten() for p in model.parameters()]) - w0).norm().item(), model

    free, _ = distance(0.0, steps=1)
    held, _ = distance(1e3, steps=1)
    assert held == free            # at the start w = w0: the penalty's gradient is zero
    free, _ = distance(0.0)
    held, full = distance(1e3)
    assert held < 0.5 * free       # then it holds the weights near the start
    ckpt = tmp_path / "l2sp.pt"
    part = _model()
    train(part, train_set, None, _cfg(epochs=None, max_steps=6, steps_per_epoch=2, lr=3e-3, l2sp=1e3), checkpoint_path=ckpt)
    resumed = _model()             # the start again, as fine_tune hands it over: the anchor is w0, not the checkpoint
    train(resumed, train_set, None, _cfg(epochs=None, max_steps=12, steps_per_epoch=2, lr=3e-3, l2sp=1e3),
          checkpoint_path=ckpt)
    for (k, va), vb in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(va, vb), k


def test_lp_ft_is_a_probe_then_every_layer(files, tmp_path):
    train_set, val_set, _ = _sets(files)
    cfg = _cfg(epochs=None, max_steps=8, steps_per_epoch=2, lr=3e-3, validate_start=True)
    model = _model()
    ckpt = tmp_path / "lpft.pt"
    result = fine_tune(model, train_set, val_set, cfg, strategy="lp-ft", checkpoint_path=ckpt)
    probe_steps = round(PROBE_FRACTION * 8)
    assert result.steps == 8
    assert [row["phase"] for row in result.history] == ["probe"] * (1 + probe_steps // 2) + ["tune"] * (1 + (8 - probe_steps) // 2)
    assert ckpt.is_file() and not (tmp_path / "lpft.probe.pt").exists()
    # the same two phases by hand, from the same start: the same weights
    manual = _model()
    fine_tune(manual, train_set, val_set, _cfg(epochs=None, max_steps=probe_steps, steps_per_epoch=2, lr=3e-3,
                                               validate_start=True), strategy="last-layers")
    frozen = {n: p.detach().clone() for n, p in manual.named_parameters()}
    fine_tune(manual, train_set, val_set, _cfg(epochs=None, max_steps=8 - probe_steps, steps_per_epoch=2, lr=3e-3,
                                               validate_start=True), strategy="end-to-end")
    for (k, va), vb in zip(model.state_dict().items(), manual.state_dict().values()):
        assert torch.equal(va, vb), k
    assert any(not torch.equal(frozen[n], p.detach()) for n, p in manual.named_parameters() if n.startswith("down_"))
    with pytest.raises(ValueError, match="two phases"):
        apply_strategy(model, "lp-ft")
    with pytest.raises(ValueError, match="at least 2"):
        fine_tune(model, train_set, val_set, _cfg(epochs=None, max_steps=1), strategy="lp-ft")
    assert "lp-ft" in STRATEGIES


def test_flip_augmentation_changes_the_run_reproducibly_and_resumes(files, tmp_path):
    train_set, _, _ = _sets(files)
    cfg = dict(epochs=None, max_steps=8, steps_per_epoch=2, lr=3e-3)

    def weights(model):
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    plain, flipped, again = _model(), _model(), _model()
    r_plain = train(plain, train_set, None, _cfg(**cfg))
    r_flip = train(flipped, train_set, None, _cfg(**cfg, augment="flips"))
    train(again, train_set, None, _cfg(**cfg, augment="flips"))
    assert torch.equal(weights(flipped), weights(again))          # the flips are seeded
    assert not torch.equal(weights(flipped), weights(plain))      # and they change what is learnt
    # flipped pairs are other inputs from the first step on
    assert r_flip.history[0]["train_loss"] != r_plain.history[0]["train_loss"]
    ckpt = tmp_path / "flips.pt"
    part = _model()
    train(part, train_set, None, _cfg(**{**cfg, "max_steps": 4}, augment="flips"), checkpoint_path=ckpt)
    resumed = _model()
    train(resumed, train_set, None, _cfg(**cfg, augment="flips"), checkpoint_path=ckpt)
    assert torch.equal(weights(resumed), weights(flipped))
    with pytest.raises(ValueError, match="another run"):          # a checkpoint of the plain run is not resumed with flips
        plain_ckpt = tmp_path / "plain.pt"
        train(_model(), train_set, None, _cfg(**{**cfg, "max_steps": 2}), checkpoint_path=plain_ckpt)
        train(_model(), train_set, None, _cfg(**cfg, augment="flips"), checkpoint_path=plain_ckpt)


_MAPS_SCRIPT = """
import json, sys, warnings
from mrtl_core.data import SliceDataset
from mrtl_core.evaluate import evaluate
if sys.argv[2] == "no-estimate":      # a disk hit must not run ESPIRiT
    import sigpy.mri.app
    def refuse(*args, **kwargs):
        raise AssertionError("maps were estimated, not read from the cache")
    sigpy.mri.app.EspiritCalib = refuse
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    res = evaluate("cg-sense", SliceDataset([sys.argv[1]], acceleration=4, seed_masks=True, with_kspace=True), cg_iters=20)
print(json.dumps({"ssim": res.metrics["ssim"].tolist(), "warnings": [str(w.message) for w in caught]}))
"""


def test_scanner_maps_are_cached_on_disk(files, tmp_path):
    """ESPIRiT maps are kept in the cache directory: another process reads them instead of estimating
    them, scores identically, and a damaged entry is reported by path and estimated again."""
    pytest.importorskip("sigpy")
    import json
    import os
    import subprocess
    from pathlib import Path
    import sys

    env = dict(os.environ, MRTL_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")

    def run(mode):
        out = subprocess.run([sys.executable, "-c", _MAPS_SCRIPT, str(files[3]), mode], env=env, capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parents[1])
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run("estimate")
    entries = sorted((tmp_path / "cache" / "maps").glob("scanner-*/maps.pt"))
    assert len(entries) == len(first["ssim"]) == 4       # one per slice of the test file
    config = json.loads((entries[0].parent / "config.json").read_text())
    assert config["method"] == "scanner" and config["estimator"]["defaults"]["max_iter"] == 30
    assert "sigpy" in config["estimator"]
    second = run("no-estimate")
    assert second["ssim"] == first["ssim"] and second["warnings"] == []
    torch.save(torch.zeros(2, 3, dtype=torch.complex64), entries[0])    # wrong shape: damaged
    third = run("estimate")
    assert third["ssim"] == first["ssim"]
    assert any(str(entries[0].parent) in w and "rebuilding" in w for w in third["warnings"]), third["warnings"]
