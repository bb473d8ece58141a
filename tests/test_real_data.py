"""The real-data benchmark (``benchmarks/real_data.py``) on inputs the test writes: a synthetic slice
saved as ``.npy`` in both phase-encoding orientations, and a fastMRI-layout folder of synthetic
subjects; a tiny U-Net checkpoint stands in for a trained network (``--no-pretrained``: nothing here
trains the profile's network)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import real_data  # noqa: E402

from mrtl_core import data, simulate, train  # noqa: E402
from mrtl_core.evaluate import evaluate  # noqa: E402
from mrtl_core.unet import Unet  # noqa: E402

CLASSICAL_ROWS = ["zero-filled", "CG-SENSE"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> SimpleNamespace:
    """One 48 x 48 slice as .npy (PE axis 1 and 2), a folder of 3 subjects x 2 slices (32 x 32), a tiny checkpoint."""
    root = tmp_path_factory.mktemp("real")
    kspace = simulate.simulate_subject("brain-1.5T", 0, num_slices=1, size=48).kspace[0]  # (C, readout, PE)
    np.save(root / "pe2.npy", kspace)                       # phase encoding along axis 2 (kx)
    np.save(root / "pe1.npy", kspace.transpose(0, 2, 1))    # the same scan, phase encoding along axis 1 (ky)
    folder = root / "folder"
    for i in range(3):
        subject = simulate.simulate_subject("brain-1.5T", i, num_slices=2, size=32)
        data.write_subject(folder / f"subject{i}.h5", subject)
    torch.manual_seed(0)
    net = Unet(chans=4, num_pool_layers=2)
    ckpt = train.save_checkpoint(root / "tiny.pt", {"model": net.state_dict(), "architecture": train.architecture(net)})
    return SimpleNamespace(root=root, pe1=root / "pe1.npy", pe2=root / "pe2.npy", folder=folder, ckpt=ckpt,
                           shape=kspace.shape)


def _run(*argv: str, capsys=None) -> tuple[int, str, str]:
    """``real_data.main(argv)`` in this process: (exit status, stdout, stderr)."""
    try:
        code = real_data.main(["--profile", "ci", "--quiet", *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out = capsys.readouterr() if capsys is not None else SimpleNamespace(out="", err="")
    return code, out.out, out.err


def _rows(path: Path) -> dict[float, dict[str, dict]]:
    payload = json.loads(path.read_text())
    return {b["acceleration"]: {r["method"]: r for r in b["rows"]} for b in payload["results"]}


def test_npy_table_orientations_figure_and_json(inputs, tmp_path, capsys):
    out1, out2, fig = tmp_path / "pe1.json", tmp_path / "pe2.json", tmp_path / "fig.png"
    common = ["--no-pretrained", "--checkpoint", str(inputs.ckpt)]
    code, stdout, _ = _run("--kspace", str(inputs.pe1), *common, "--out", str(out1), "--figure", str(fig), capsys=capsys)
    assert code == 0
    for name in CLASSICAL_ROWS + ["checkpoint tiny.pt"]:
        assert name in stdout
    assert _run("--kspace", str(inputs.pe2), "--pe-axis", "2", *common, "--out", str(out2), capsys=capsys)[0] == 0
    a, b = _rows(out1)[4.0], _rows(out2)[4.0]
    assert list(a) == CLASSICAL_ROWS + ["checkpoint tiny.pt"]
    # the transposed array is the same scan: the same numbers, row by row
    for name in a:
        assert a[name]["per_slice"] == b[name]["per_slice"], name
        assert a[name]["n_slices"] == 1
    # CG-SENSE (ESPIRiT maps from the 24-column calibration) beats zero-filling at R = 4
    assert a["CG-SENSE"]["mean"]["ssim_fg"] > a["zero-filled"]["mean"]["ssim_fg"] + 0.05
    d = a["CG-SENSE"]["ssim_fg_minus_zero_filled"]
    assert d["mean"] == pytest.approx(a["CG-SENSE"]["mean"]["ssim_fg"] - a["zero-filled"]["mean"]["ssim_fg"])
    assert a["zero-filled"]["ssim_fg_minus_zero_filled"] is None
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.stat().st_size > 10_000
    payload = json.loads(out1.read_text())
    assert payload["pe_axis"] == 1 and payload["split"]["train"] == [] and len(payload["split"]["test"]) == 1


def test_folder_finetuning_never_tests_on_its_own_slices_and_scores_zero_filled_as_evaluate(inputs, tmp_path, capsys):
    out = tmp_path / "ft.json"
    code, stdout, _ = _run("--data-dir", str(inputs.folder), "--no-pretrained", "--checkpoint", str(inputs.ckpt),
                           "--finetune-slices", "2", "--finetune-max-steps", "2", "--out", str(out), capsys=capsys)
    assert code == 0, stdout
    payload = json.loads(out.read_text())
    split = {k: {tuple(s) for s in payload["split"][k]} for k in ("train", "val", "test")}
    assert split["train"] and split["val"] and split["test"]
    assert not split["train"] & split["test"] and not split["val"] & split["test"]
    assert not split["train"] & split["val"]
    # whole subjects: no file is in two roles
    files = {k: {name for name, _ in v} for k, v in split.items()}
    assert files == {"train": {"subject0.h5"}, "val": {"subject1.h5"}, "test": {"subject2.h5"}}
    rows = {r["method"]: r for r in payload["results"][0]["rows"]}
    assert list(rows) == CLASSICAL_ROWS + ["checkpoint tiny.pt", "checkpoint tiny.pt fine-tuned on 2 slices"]
    for row in rows.values():
        assert {tuple(s) for s in row["slices"]} == split["test"]
    info = rows["checkpoint tiny.pt fine-tuned on 2 slices"]["finetune"]
    trained = {tuple(s) for s in info["slices"]}
    assert len(trained) == 2 and trained <= split["train"] and not trained & split["test"]
    assert info["val_slices"] == len(split["val"]) and 1 <= info["steps"] <= 2
    assert info["config"]["monitor"] == "ssim_fg"     # the book's recipe: early stopping on foreground SSIM
    # zero-filled computed independently: the library's dataset of the test files (the CLI's fixed masks)
    reference = evaluate("zero-filled", data.SliceDataset([inputs.folder / "subject2.h5"], acceleration=4,
                                                          with_kspace=True))
    zf = rows["zero-filled"]
    assert zf["n_slices"] == len(reference.slices) == 2
    assert [tuple(s) for s in zf["slices"]] == reference.slices
    for key in ("ssim", "psnr", "nmse", "ssim_fg", "psnr_fg", "nmse_fg"):
        assert zf["mean"][key] == pytest.approx(reference.mean(key), rel=1e-12), key
        assert zf["per_slice"][key] == pytest.approx(reference.metrics[key].tolist(), rel=1e-12), key


def test_without_finetuning_every_slice_of_the_folder_is_tested_in_the_loaders_order(inputs):
    files = real_data.data_files(inputs.folder)
    split = real_data.plan_split(files, 0, 2, str(inputs.folder))
    loader = data.SliceDataset(data.list_files(inputs.folder), acceleration=4)
    assert split.train == split.val == [] and split.test == real_data.slice_keys(loader)
    assert len(split.test) == 6


def test_single_volume_split_is_in_slice_order():
    f = SimpleNamespace(path=Path("vol.h5"), num_slices=6, patient_id="p")
    split = real_data.plan_split([f], 2, 1, "vol.h5")
    assert [s for _, s in split.train] == [0, 1] and [s for _, s in split.val] == [2]
    assert [s for _, s in split.test] == [3, 4, 5]
    with pytest.raises(real_data.InputError, match=r"vol\.h5 holds 6 slice"):
        real_data.plan_split([f], 5, 1, "vol.h5")


def test_bad_inputs_exit_2_naming_the_file_and_shape(inputs, tmp_path, capsys):
    real = tmp_path / "real.npy"
    np.save(real, np.ones((4, 8, 8), dtype=np.float32))
    four = tmp_path / "four.npy"
    np.save(four, np.ones((1, 4, 8, 8), dtype=np.complex64))
    c, rows, cols = inputs.shape
    pe1_shape = str((c, cols, rows))  # the .npy with phase encoding along axis 1
    cases = [
        (["--kspace", str(real)], ["real.npy", "(4, 8, 8)", "float32"]),
        (["--kspace", str(four)], ["four.npy", "(1, 4, 8, 8)"]),
        (["--kspace", str(inputs.pe1), "--pe-axis", "0"], ["pe1.npy", pe1_shape, "--pe-axis 0"]),
        (["--kspace", str(inputs.pe1), "--pe-axis", "3"], ["pe1.npy", pe1_shape, "--pe-axis 3"]),
        (["--kspace", str(inputs.pe1), "--crop", "200", "40"], ["pe1.npy", "--crop 200 40", "96 x 48"]),
        (["--kspace", str(inputs.pe1), "--checkpoint", str(inputs.ckpt), "--finetune-slices", "1"],
         ["pe1.npy", "1 slice"]),
        (["--data-dir", str(inputs.folder), "--checkpoint", str(inputs.ckpt), "--finetune-slices", "5"],
         [str(inputs.folder), "6 slices of 3 subjects"]),
        (["--kspace", str(tmp_path / "missing.npy")], ["missing.npy", "no such file"]),
        (["--data-dir", str(inputs.folder), "--pe-axis", "2"], ["--pe-axis"]),
        (["--kspace", str(inputs.pe1), "--checkpoint", str(tmp_path / "none.pt")], ["none.pt"]),
    ]
    for argv, expected in cases:
        code, _, err = _run("--no-pretrained", *argv, capsys=capsys)
        assert code == 2, (argv, err)
        for text in expected:
            assert text in err, (argv, text, err)
        assert "Traceback" not in err


def test_command_line_exit_status(inputs, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((8, 8), dtype=np.complex64))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "real_data.py"), "--kspace", str(bad),
                           "--no-pretrained"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "bad.npy" in proc.stderr and "(8, 8)" in proc.stderr and "Traceback" not in proc.stderr
