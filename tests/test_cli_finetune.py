"""The CLI on top of ``experiment``: ``finetune`` trains with the book's configuration (monitor included)
on the book's slice selection, one learning-rate rule, choices read from the library, one path check."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mrtl_core import cache, cli, experiment, masks, train
from mrtl_core.commands import finetune as finetune_cmd, train as train_cmd
from mrtl_core.profiles import get_profile
from mrtl_core.unet import Unet

CI = get_profile("ci")


def _args(*extra: str):
    return cli.build_parser().parse_args(["finetune", "--profile", "ci", "--init", "x.pt", "--quiet", *extra])


def test_cli_finetune_config_is_the_books():
    for n in (1, 4, 20):
        assert finetune_cmd.finetune_config(_args(), CI, n) == experiment.finetune_config(CI, n, 0, progress=False)
    cfg = finetune_cmd.finetune_config(_args(), CI, 4)
    assert cfg.monitor == CI.finetune_monitor == "ssim_fg"      # not L1: the book early-stops on foreground SSIM
    assert cfg.validate_start and cfg.patience == CI.finetune_patience and cfg.lr_step_size == experiment.NO_LR_DECAY


def test_cli_options_replace_the_profiles_settings():
    args = _args("--max-steps", "7", "--lr", "0.01", "--patience", "0", "--batch-size", "2", "--seed", "3",
                 "--lr-step-size", "5", "--epochs", "2", "--no-amp", "--num-workers", "1")
    assert finetune_cmd.finetune_config(args, CI, 4) == experiment.finetune_config(
        CI, 4, 3, progress=False, max_steps=7, lr=0.01, patience=0, batch_size=2, lr_step_size=5, epochs=2,
        amp=False, num_workers=1)
    recipe = _args("--schedule", "warmup-cosine", "--warmup-steps", "3", "--layer-lr-decay", "0.5", "--l2sp", "0.1",
                   "--strategy", "lp-ft")
    assert finetune_cmd.finetune_config(recipe, CI, 4) == experiment.finetune_config(
        CI, 4, 0, progress=False, schedule="warmup-cosine", warmup_steps=3, layer_lr_decay=0.5, l2sp=0.1)
    for bad in (["--layer-lr-decay", "0"], ["--layer-lr-decay", "1.5"], ["--l2sp", "-1"], ["--schedule", "linear"]):
        with pytest.raises(SystemExit):
            _args(*bad)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """Two training subjects (2 slices each) and one validation subject, 16 x 16."""
    root = tmp_path_factory.mktemp("tiny")
    for split, first, n in (("train", 0, 2), ("val", 2, 1)):
        assert cli.main(["simulate", "--subjects", str(n), "--first-subject", str(first), "--slices", "2",
                         "--size", "16", "--out", str(root / split), "--quiet"]) == 0
    return root


def test_cli_finetune_trains_the_books_slices_with_the_books_config(tiny_dir, tmp_path, monkeypatch):
    seen = {}

    def fake_fine_tune(model, train_set, val_set, config, strategy="end-to-end", checkpoint_path=None, resume=True):
        seen.update(train_set=train_set, val_set=val_set, config=config, strategy=strategy)
        return train.TrainResult(best_epoch=0, best_value=0.5)

    monkeypatch.setattr(train, "fine_tune", fake_fine_tune)
    monkeypatch.setattr(train, "load_model", lambda path, *a, **k: Unet(chans=2, num_pool_layers=1))
    init, out = tmp_path / "init.pt", tmp_path / "run.json"
    init.write_bytes(b"")  # load_model is replaced: only its existence is checked
    assert cli.main(["finetune", "--data-dir", str(tiny_dir), "--profile", "ci", "--init", str(init), "--n-slices", "3",
                     "--seed", "1", "--strategy", "last-layers", "--quiet", "--out", str(out)]) == 0
    # the first 3 of the permutation experiment.target_slices draws for seed 1, as the book's runs
    book = sorted(int(i) for i in np.random.default_rng([1, 20210]).permutation(4)[:3])
    assert seen["train_set"].indices == book == experiment.select_slices(range(4), 3, 1).indices
    assert len(seen["train_set"].dataset) == 4 and len(seen["val_set"]) == 2
    assert seen["config"] == experiment.finetune_config(CI, 3, 1, progress=False)
    assert seen["strategy"] == "last-layers"
    assert json.loads(out.read_text())["config"]["monitor"] == "ssim_fg"


def test_one_learning_rate_rule():
    assert experiment.pretrain_config(CI).lr_step_size == experiment.lr_decay_step(CI.pretrain_epochs) == 16
    assert experiment.scratch_config(CI).lr_step_size == experiment.lr_decay_step(CI.scratch_epochs)
    args = cli.build_parser().parse_args(["train", "--profile", "ci", "--epochs", "20", "--quiet"])
    assert train_cmd.train_config(args, CI.pretrain_epochs, None, CI.batch_size, CI.lr).lr_step_size == 16
    package = Path(experiment.__file__).parent
    rules = {p.name: p.read_text().count("round(0.8 *") for p in package.rglob("*.py") if "round(0.8 *" in p.read_text()}
    assert rules == {"experiment.py": 1}, rules


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(argv)
    return " ".join(capsys.readouterr().out.split())


def test_choices_are_the_librarys_constants(capsys, monkeypatch):
    assert "{" + ",".join(train.STRATEGIES) + "}" in _help(["finetune", "--help"], capsys)
    assert "{" + ",".join(masks.MASK_KINDS) + "}" in _help(["train", "--help"], capsys)
    monkeypatch.setattr(train, "STRATEGIES", (*train.STRATEGIES, "new-strategy"))
    assert _args("--strategy", "new-strategy").strategy == "new-strategy"   # read from the constant, not a copy


def test_building_the_parser_imports_no_torch():
    code = "import sys; from mrtl_core import cli; cli.build_parser().format_help(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_blocking_file(tmp_path, capsys):
    plain = tmp_path / "plain.txt"
    plain.write_text("a file\n")
    assert cache.blocking_file(plain / "sub" / "ck.pt") == plain
    assert cache.blocking_file(tmp_path / "new" / "ck.pt") is None
    assert cache.blocking_file(plain) is None                      # the path itself is no ancestor
    assert cli.main(["simulate", "--subjects", "1", "--out", str(plain / "sub"), "--quiet"]) == cli.EXIT_BAD_INPUT
    assert f"{plain} is a file, not a directory" in capsys.readouterr().err
    with pytest.raises(cli.CLIError, match="plain.txt is a file, not a directory"):
        train_cmd.check_file_target(plain / "sub" / "ck.pt", "--checkpoint")


def test_cli_runs_the_lp_ft_recipe_for_real_and_resumes(tiny_dir, tmp_path):
    """No mocks: a tiny U-Net pre-trained by the CLI, then fine-tuned with lp-ft + L2-SP + warm-up."""
    import torch

    init, ck, out = tmp_path / "init.pt", tmp_path / "ft.pt", tmp_path / "ft.json"
    assert cli.main(["train", "--data-dir", str(tiny_dir), "--profile", "ci", "--chans", "2", "--num-pool-layers", "1",
                     "--epochs", "1", "--quiet", "--checkpoint", str(init)]) == 0
    args = ["finetune", "--data-dir", str(tiny_dir), "--profile", "ci", "--init", str(init), "--n-slices", "2",
            "--strategy", "lp-ft", "--max-steps", "8", "--schedule", "warmup-cosine", "--warmup-steps", "2",
            "--l2sp", "0.01", "--layer-lr-decay", "0.7", "--quiet", "--checkpoint", str(ck), "--out", str(out)]
    assert cli.main(args) == 0
    record = json.loads(out.read_text())
    assert record["strategy"] == "lp-ft" and record["result"]["steps"] == 8
    assert {row["phase"] for row in record["result"]["history"]} == {"probe", "tune"}
    assert record["config"]["l2sp"] == 0.01 and record["config"]["schedule"] == "warmup-cosine"
    first = train.load_model(ck).state_dict()
    assert cli.main(args) == 0    # resumed from the finished checkpoints: the same weights
    for (k, a), b in zip(first.items(), train.load_model(ck).state_dict().values()):
        assert torch.equal(a, b), k
