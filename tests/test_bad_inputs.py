"""Every bad input a person can give the CLI, answered by one line that names the fault.

Each case runs ``python -m mrtl_core ...`` as a subprocess (as a person would), on tiny files
written here, with the cache under ``tmp_path``, and asserts: a non-zero exit (2 for bad input),
exactly one line on stderr, no traceback, the words that name the file / key / shape / value at
fault, and that nothing in the prepared world changed (checkpoints, data and caches untouched).
The same table, one line per case, is the RELIABILITY section of ``benchmarks/RESULTS.md``
(``python tests/test_bad_inputs.py`` prints it).
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SIZE = 16          # 16x16 images: a U-Net step is milliseconds
TINY_NET = ["--chans", "2", "--num-pool-layers", "2"]


# ------------------------------------------------------------------------------- the world


def _kspace(rng: np.random.Generator, s: int, c: int, h: int, w: int) -> np.ndarray:
    k = rng.standard_normal((s, c, h, w)) + 1j * rng.standard_normal((s, c, h, w))
    k[..., h // 2 - 2: h // 2 + 2, w // 2 - 2: w // 2 + 2] *= 30  # an image-like bright centre
    return k.astype(np.complex64)


def _write(path: Path, seed: int, size: int = SIZE, slices: int = 2, coils: int = 2, sens: bool = True) -> Path:
    from mrtl_core.data import write_fastmri_file

    rng = np.random.default_rng(seed)
    k = _kspace(rng, slices, coils, 2 * size, size)
    maps = _kspace(rng, slices, coils, 2 * size, size) if sens else None
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_fastmri_file(path, k, field_strength_T=1.5, fov_mm=(220.0, 220.0, 5.0), recon_size=(size, size),
                              patient_id=f"p{seed}", acquisition="AXT2", sens_maps=maps)


def _edit(path: Path, edit) -> Path:
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def _replace(key: str, value):
    def edit(f):
        del f[key]
        f[key] = value
    return edit


def _test_layout(path: Path, seed: int, mask: np.ndarray | None = None) -> Path:
    """fastMRI's test/challenge layout: under-sampled k-space, a ``mask``, no target, no max/norm."""
    _write(path, seed, sens=False)
    if mask is None:
        mask = np.zeros(SIZE, np.float32)
        mask[::4] = 1
        mask[SIZE // 2 - 1: SIZE // 2 + 1] = 1

    def edit(f):
        keep = np.asarray(mask, bool) if np.asarray(mask).shape == (SIZE,) else np.ones(SIZE, bool)
        f["kspace"][...] = f["kspace"][()] * keep
        del f["reconstruction_rss"]
        del f.attrs["max"], f.attrs["norm"]
        f["mask"] = mask
    return _edit(path, edit)


def _cli_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MRTL_")}
    env.update(MRTL_CACHE_DIR=str(cache), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return env


def cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrtl_core", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)


def _concurrently(commands: dict[str, list[str]], env: dict[str, str]) -> dict[str, subprocess.CompletedProcess]:
    """Run CLI commands two at a time: most of each is importing torch, and there are two cores."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(cli, args, env) for name, args in commands.items()}
        return {name: f.result() for name, f in futures.items()}


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (the world is a few hundred kB)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Good data, three checkpoints and a bad file of every kind, written once for all cases."""
    return make_world(tmp_path_factory.mktemp("world"))


def make_world(root: Path) -> dict:
    """Write the cases' world under ``root``: ``{field: path}`` plus ``env`` for the CLI."""
    env = _cli_env(root / "cache")
    w = {"root": root, "env": env}
    good = root / "good"
    for split, seeds in (("train", (0, 1)), ("val", (2,)), ("test", (3,))):
        for s in seeds:
            _write(good / split / f"s{s}.h5", s)
    w["good"] = good

    def spike(f):  # a target pixel far above the zero-filled image's +6 sigma: the U-Net transform clamps it
        f["reconstruction_rss"][0, SIZE // 2, SIZE // 2] = 50 * f["reconstruction_rss"][()].max()
        f.attrs["max"] = float(f["reconstruction_rss"][()].max())
    _edit(good / "test" / "s3.h5", spike)
    for name, splits in (("notest", ("train", "val")), ("notrain", ("val", "test"))):
        for split in splits:
            _write(root / name / split / "a.h5", 10 + len(split))
        w[name] = root / name
    (root / "empty").mkdir()
    w["empty"] = root / "empty"
    w["mixed"] = root / "mixed"
    _write(w["mixed"] / "train" / "small.h5", 20)
    _write(w["mixed"] / "train" / "large.h5", 21, size=24)
    w["few"] = root / "few"  # one directory, split 80/10/10 by subject: two subjects are too few
    _write(w["few"] / "a.h5", 22)
    _write(w["few"] / "b.h5", 23)

    # one directory per malformed file (in train/ and test/), so that --data-dir points at one fault
    def bad(name: str, make) -> None:
        d = root / "bad" / name
        (d / "train").mkdir(parents=True)
        make(d / "train" / f"{name}.h5")
        (d / "test").mkdir()
        (d / "test" / f"{name}.h5").write_bytes((d / "train" / f"{name}.h5").read_bytes())
        w[f"bad_{name}"] = d

    bad("nothdf5", lambda p: p.write_text("this is not HDF5\n"))
    bad("truncated", lambda p: os.truncate(_write(p, 30), p.stat().st_size // 2))
    bad("nokey", lambda p: _edit(_write(p, 31), lambda f: f.__delitem__("reconstruction_rss")))
    bad("noattr", lambda p: _edit(_write(p, 32), lambda f: f.attrs.__delitem__("max")))
    bad("maxzero", lambda p: _edit(_write(p, 33), lambda f: f.attrs.__setitem__("max", 0.0)))
    bad("dtype", lambda p: _edit(_write(p, 34), _replace("kspace", np.zeros((2, 2, 2 * SIZE, SIZE), np.float32))))
    bad("rank", lambda p: _edit(_write(p, 35), _replace("kspace", np.zeros((2, 2 * SIZE, SIZE), np.complex64))))
    bad("coils", lambda p: _edit(_write(p, 36), _replace("sens_maps", np.zeros((2, 3, 2 * SIZE, SIZE), np.complex64))))
    bad("slices", lambda p: _edit(_write(p, 37), _replace("reconstruction_rss", np.zeros((3, SIZE, SIZE), np.float32))))
    bad("header", lambda p: _edit(_write(p, 38), _replace("ismrmrd_header", np.bytes_(b"<not xml"))))
    bad("nan", lambda p: _edit(_write(p, 39), lambda f: f["kspace"].__setitem__((1, 0, 3, 3), np.nan)))
    bad("zeromaps", lambda p: _edit(_write(p, 40), lambda f: f["sens_maps"].__setitem__(Ellipsis, 0)))
    bad("masklen", lambda p: _test_layout(p, 41, mask=np.ones(SIZE + 3, np.float32)))
    bad("maskempty", lambda p: _test_layout(p, 42, mask=np.zeros(SIZE, np.float32)))
    bad("maskvalues", lambda p: _test_layout(p, 43, mask=np.full(SIZE, 0.5, np.float32)))
    w["challenge"] = root / "challenge"
    _test_layout(w["challenge"] / "test" / "c0.h5", 50)
    _write(w["challenge"] / "train" / "t0.h5", 51)
    w["targetless"] = root / "targetless"
    _test_layout(w["targetless"] / "train" / "c1.h5", 52)

    w["file"] = root / "plain.txt"
    w["file"].write_text("a file, not a directory\n")
    w["garbage"] = root / "garbage.pt"
    w["garbage"].write_bytes(b"not a checkpoint" * 8)
    import torch

    w["noarch"] = root / "noarch.pt"
    torch.save({"model": {}}, w["noarch"])

    # checkpoints: A and B (other seed: other weights), FA fine-tuned from A
    data = ["--data-dir", str(good), "--profile", "ci", "--quiet"]
    runs = {"A": ["train", *data, *TINY_NET, "--epochs", "1", "--checkpoint", str(root / "A.pt")],
            "B": ["train", *data, *TINY_NET, "--epochs", "1", "--seed", "1", "--checkpoint", str(root / "B.pt")],
            "FA": ["finetune", *data, "--init", str(root / "A.pt"), "--max-steps", "2", "--checkpoint", str(root / "FA.pt")]}
    for group in (("A", "B"), ("FA",)):
        done = _concurrently({name: runs[name] for name in group}, env)
        for name, r in done.items():
            assert r.returncode == 0, (name, r.stderr)
            w[name] = root / f"{name}.pt"
    w["data"] = data
    _cache_entry(root / "cache")
    return w


def _cache_entry(cache_dir: Path) -> Path:
    """One complete cache entry, so that "caches untouched" is checked against something."""
    from mrtl_core import cache

    saved = os.environ.get("MRTL_CACHE_DIR")
    os.environ["MRTL_CACHE_DIR"] = str(cache_dir)
    try:
        return cache.cached_dir("models", "kept", {"kept": 1}, lambda tmp: (tmp / "info.json").write_text("{}"))
    finally:
        if saved is None:
            del os.environ["MRTL_CACHE_DIR"]
        else:
            os.environ["MRTL_CACHE_DIR"] = saved


# ------------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """``args`` (with ``{name}`` fields from the world) must fail with a line containing ``words``."""

    name: str
    args: str
    words: tuple[str, ...]
    absent: tuple[str, ...] = ()   # paths (world fields) that must not exist afterwards
    code: int = 2
    what: str = field(default="", compare=False)  # the input, in words, for RESULTS.md


D = "--data-dir {good} --profile ci --quiet"
T = "train " + D + " --chans 2 --num-pool-layers 2 --epochs 1"
F = "finetune " + D + " --init {A} --max-steps 2"
E = "evaluate " + D

CASES = [
    # -- the command line itself
    Case("no command", "", ("required", "simulate,train,finetune,evaluate")),
    Case("unknown command", "fly", ("invalid choice", "fly")),
    Case("unknown option", "train --colour red", ("unrecognized arguments", "--colour")),
    Case("non-numeric value", "simulate --size abc --out {root}/x", ("--size", "abc")),
    # -- simulate
    Case("simulate odd size", "simulate --size 65 --out {root}/sim65 --quiet", ("--size 65", "even"), absent=("sim65",)),
    Case("simulate size 0", "simulate --size 0 --out {root}/x", ("--size", "'0'")),
    Case("simulate 0 subjects", "simulate --subjects 0 --out {root}/x", ("--subjects", "'0'")),
    Case("simulate negative slices", "simulate --slices -1 --out {root}/x", ("--slices", "'-1'")),
    Case("simulate negative seed", "simulate --seed -1 --out {root}/x", ("--seed", "'-1'")),
    Case("simulate negative first subject", "simulate --first-subject -2 --out {root}/x", ("--first-subject", "'-2'")),
    Case("simulate unknown domain", "simulate --domain brain-7T --out {root}/x", ("brain-7T", "unknown", "brain-1.5T")),
    Case("simulate without --out", "simulate --quiet", ("--out", "required")),
    Case("simulate --out is a file", "simulate --subjects 1 --out {file} --quiet", ("plain.txt", "is a file")),
    Case("simulate --out under a file", "simulate --subjects 1 --out {file}/sub --quiet", ("plain.txt", "is a file")),
    # -- settings that used to fall back silently to defaults
    Case("batch size 0", T + " --batch-size 0", ("--batch-size", "'0'")),
    Case("learning rate 0", T + " --lr 0", ("--lr", "'0'")),
    Case("negative learning rate", T + " --lr -1", ("--lr", "'-1'")),
    Case("NaN learning rate", T + " --lr nan", ("--lr", "'nan'")),
    Case("0 epochs", T + " --epochs 0", ("--epochs", "'0'")),
    Case("0 max steps", T + " --max-steps 0", ("--max-steps", "'0'")),
    Case("negative seed", T + " --seed -1", ("--seed", "'-1'")),
    Case("negative split seed", T + " --split-seed -3", ("--split-seed", "'-3'")),
    Case("negative patience", T + " --patience -1", ("--patience", "'-1'")),
    Case("negative workers", T + " --num-workers -1", ("--num-workers", "'-1'")),
    Case("0 channels", T + " --chans 0", ("--chans", "'0'")),
    Case("dropout 1.5", T + " --drop-prob 1.5", ("--drop-prob", "'1.5'")),
    Case("acceleration below 1", T + " --acceleration 0.5", ("--acceleration", "'0.5'")),
    Case("infinite acceleration", T + " --acceleration inf", ("--acceleration", "'inf'")),
    Case("centre fraction 0", T + " --center-fraction 0", ("--center-fraction", "'0'")),
    Case("centre fraction 1.5", T + " --center-fraction 1.5", ("--center-fraction", "'1.5'")),
    Case("unknown mask kind", T + " --mask-kind spiral", ("--mask-kind", "spiral")),
    Case("R larger than the columns", T + " --acceleration 65", ("s0.h5", "acceleration=65", "16 phase-encode columns")),
    Case("huge R, default centre", T + " --acceleration 1e9", ("s0.h5", "acceleration=1e+09", "16 phase-encode columns")),
    Case("centre wider than R allows", T + " --acceleration 8 --center-fraction 0.5", ("s0.h5", "center_fraction=0.5")),
    Case("unknown synthetic domain", "train --domain brain-9T --profile ci --quiet", ("unknown domain 'brain-9T'", "brain-1.5T")),
    Case("not a device", T + " --device gpu", ("--device 'gpu'", "not a device")),
    Case("a CUDA device this machine lacks", T + " --device cuda:99", ("--device cuda:99", "CUDA device(s)")),
    Case("evaluate on a device this machine lacks", E + " --device cuda:99", ("--device cuda:99", "CUDA device(s)")),
    Case("unknown profile", "train --data-dir {good} --profile huge --quiet", ("unknown profile", "huge")),
    # -- data directories and files
    Case("missing --data-dir", "train --data-dir {root}/nowhere --quiet", ("nowhere", "no such directory")),
    Case("--data-dir is a file", "train --data-dir {file} --quiet", ("plain.txt", "is a file")),
    Case("empty --data-dir", "train --data-dir {empty} --profile ci --quiet", ("empty", "no .h5 files")),
    Case("no train/ split", "train --data-dir {notrain} --profile ci --quiet", ("notrain", "no train/")),
    Case("no test/ split", "evaluate --data-dir {notest} --profile ci --quiet", ("notest", "no test/ split")),
    Case("too few subjects to split", "train --data-dir {few} --profile ci --quiet", ("--data-dir", "few", "split 'val' would be empty")),
    Case("mixed image shapes", "train --data-dir {mixed} --profile ci --quiet " + " ".join(TINY_NET),
         ("2 shapes", "16x16", "24x24", "small.h5", "large.h5")),
    Case("a crop larger than an image", "train --data-dir {mixed} --profile ci --quiet --crop-size 20 20 "
         + " ".join(TINY_NET), ("small.h5", "crop_size (20, 20) exceeds")),
    Case("not HDF5", "train --data-dir {bad_nothdf5} --profile ci --quiet --epochs 1", ("nothdf5.h5", "not an HDF5 file")),
    Case("truncated file", "train --data-dir {bad_truncated} --profile ci --quiet --epochs 1", ("truncated.h5", "truncated")),
    Case("missing reconstruction_rss", "train --data-dir {bad_nokey} --profile ci --quiet --epochs 1",
         ("nokey.h5", "missing dataset 'reconstruction_rss'")),
    Case("missing attribute max", "train --data-dir {bad_noattr} --profile ci --quiet --epochs 1", ("noattr.h5", "missing attribute 'max'")),
    Case("attribute max = 0", "evaluate --data-dir {bad_maxzero} --profile ci --quiet", ("maxzero.h5", "attribute 'max' is 0.0")),
    Case("real k-space", "train --data-dir {bad_dtype} --profile ci --quiet --epochs 1", ("dtype.h5", "kspace", "float32", "complex")),
    Case("k-space of rank 3", "train --data-dir {bad_rank} --profile ci --quiet --epochs 1", ("rank.h5", "kspace", "rank 3")),
    Case("coil count mismatch", "train --data-dir {bad_coils} --profile ci --quiet --epochs 1", ("coils.h5", "sens_maps", "3 coils")),
    Case("slice count mismatch", "train --data-dir {bad_slices} --profile ci --quiet --epochs 1",
         ("slices.h5", "reconstruction_rss", "3 slices")),
    Case("header not XML", "train --data-dir {bad_header} --profile ci --quiet --epochs 1", ("header.h5", "ismrmrd_header", "XML")),
    Case("NaN in k-space", "evaluate --data-dir {bad_nan} --profile ci --quiet", ("nan.h5", "slice 1", "NaN")),
    Case("NaN in k-space, read by a worker", "train --data-dir {bad_nan} --profile ci --quiet --epochs 1 --num-workers 1 "
         + " ".join(TINY_NET), ("nan.h5", "slice 1", "NaN")),
    Case("all-zero coil maps", "evaluate --data-dir {bad_zeromaps} --profile ci --quiet --methods cg-sense --maps true",
         ("zeromaps.h5", "slice 0", "maps are all zero")),
    Case("mask of the wrong length", "evaluate --data-dir {bad_masklen} --profile ci --quiet",
         ("masklen.h5", "'mask' has shape (19,)", "16 columns")),
    Case("mask that samples nothing", "evaluate --data-dir {bad_maskempty} --profile ci --quiet",
         ("maskempty.h5", "'mask' samples no column")),
    Case("mask of 0.5s", "evaluate --data-dir {bad_maskvalues} --profile ci --quiet", ("maskvalues.h5", "other than 0 and 1")),
    Case("challenge file, nothing to score", "evaluate --data-dir {challenge} --profile ci --quiet",
         ("c0.h5", "no reconstruction_rss", "--recon-dir")),
    Case("train with a bad file mask", "train --data-dir {bad_masklen} --profile ci --quiet --epochs 1",
         ("masklen.h5", "'mask' has shape")),
    Case("train on target-less files", "train --data-dir {targetless} --profile ci --quiet " + " ".join(TINY_NET),
         ("c1.h5", "no reconstruction_rss", "training")),
    # -- checkpoints and output paths
    Case("--checkpoint under a file", T + " --checkpoint {file}/ck.pt", ("--checkpoint", "plain.txt", "is a file")),
    Case("--checkpoint is a directory", T + " --checkpoint {empty}", ("--checkpoint", "empty", "is a directory")),
    Case("--out is a directory", T + " --out {empty}", ("--out", "empty", "is a directory")),
    Case("--out under a file", T + " --out {file}/run.json", ("--out", "plain.txt", "is a file")),
    Case("--out is the checkpoint", T + " --checkpoint {root}/c.pt --out {root}/c.pt", ("--out", "c.pt", "--checkpoint")),
    Case("resume with another lr", T + " --checkpoint {A} --lr 0.5", ("A.pt", "another run", "lr 0.003 -> 0.5")),
    Case("resume with another batch size", T + " --checkpoint {A} --batch-size 1", ("A.pt", "batch_size 4 -> 1")),
    Case("resume with another seed", T + " --checkpoint {A} --seed 3", ("A.pt", "seed 0 -> 3")),
    Case("resume with another architecture", "train " + D + " --chans 4 --num-pool-layers 2 --epochs 1 --checkpoint {A}",
         ("A.pt", "architecture", "chans: checkpoint 2 vs model 4")),
    Case("--checkpoint holds garbage", T + " --checkpoint {garbage}", ("garbage.pt", "could not read checkpoint")),
    Case("finetune --init missing", "finetune " + D + " --init {root}/none.pt", ("--init", "none.pt", "no such file")),
    Case("finetune --init a directory", "finetune " + D + " --init {empty}", ("--init", "empty", "is a directory")),
    Case("finetune --init garbage", "finetune " + D + " --init {garbage}", ("garbage.pt", "could not read checkpoint")),
    Case("finetune --init without architecture", "finetune " + D + " --init {noarch}", ("noarch.pt", "does not describe a Unet")),
    Case("finetune --init B on A's checkpoint", "finetune " + D + " --init {B} --max-steps 2 --checkpoint {FA}",
         ("FA.pt", "another run", "began from other weights (another init checkpoint)")),
    Case("finetune another strategy on a checkpoint", F + " --strategy last-layers --checkpoint {FA}",
         ("FA.pt", "strategy 'end-to-end' -> 'last-layers'")),
    Case("finetune --checkpoint is --init", F + " --checkpoint {A}", ("--checkpoint", "A.pt", "is the --init")),
    Case("finetune 0 slices", F + " --n-slices 0", ("--n-slices", "'0'")),
    Case("finetune more slices than exist", F + " --n-slices 99", ("--n-slices 99", "[1, 4]")),
    Case("finetune unknown strategy", F + " --strategy all", ("--strategy", "'all'")),
    # -- evaluate
    Case("evaluate 0 slices", E + " --max-slices 0", ("--max-slices", "'0'")),
    Case("evaluate 0 CG iterations", E + " --cg-iters 0", ("--cg-iters", "'0'")),
    Case("evaluate a missing checkpoint", E + " --checkpoint {root}/none.pt", ("--checkpoint", "none.pt", "no such file")),
    Case("evaluate nothing", E + " --methods", ("nothing to evaluate",)),
    Case("evaluate unknown method", E + " --methods sense", ("--methods", "'sense'")),
    Case("evaluate --out under a file", E + " --out {file}/s.json", ("--out", "plain.txt", "is a file")),
    Case("evaluate --recon-dir is a file", E + " --recon-dir {file}", ("--recon-dir", "plain.txt", "is a file")),
]


def _fill(text: str, w: dict) -> list[str]:
    return text.format(**{k: v for k, v in w.items() if isinstance(v, Path)}).split()


def test_enough_cases():
    assert len(CASES) >= 60 and len({c.name for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def answers(world) -> dict:
    """Every case's answer, and the files of the world that changed while all of them ran."""
    before = _digest(world["root"])
    assert any(k.startswith("cache/models/kept-") for k in before)
    out = _concurrently({c.name: _fill(c.args, world) for c in CASES}, world["env"])
    after = _digest(world["root"])
    # nothing existing may change or vanish; nothing new may appear but a cache lock file
    changed = {k for k in before if after.get(k) != before[k]}
    changed |= {k for k in set(after) - set(before) if not k.endswith(".lock")}
    return {"results": out, "changed": changed}


def test_nothing_lost_or_half_written(answers):
    assert not answers["changed"]  # checkpoints, data and outputs untouched by every failed command


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_naming_the_fault(world, answers, case):
    r = answers["results"][case.name]
    lines = r.stderr.splitlines()
    assert r.returncode == case.code, (r.returncode, r.stderr)
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and lines[0].startswith("error: "), r.stderr
    for word in case.words:
        assert word in lines[0], (word, lines[0])
    for name in case.absent:
        assert not (world["root"] / name).exists(), name


def test_debug_shows_the_traceback(world):
    r = cli(["--debug", *_fill(T + " --acceleration 65", world)], world["env"])
    assert r.returncode != 0 and "Traceback" in r.stderr and "acceleration=65" in r.stderr


# ------------------------------------------------------------------------------- what works


def test_changed_settings_start_afresh_with_no_resume(world, tmp_path):
    ck = tmp_path / "A.pt"
    ck.write_bytes(world["A"].read_bytes())
    r = cli(_fill(T, world) + ["--checkpoint", str(ck), "--lr", "0.5", "--no-resume"], world["env"])
    assert r.returncode == 0, r.stderr
    import torch

    assert torch.load(ck, weights_only=False)["config"]["lr"] == 0.5


def test_finetune_from_another_init_starts_afresh_with_no_resume(world, tmp_path):
    import json

    ck = tmp_path / "FA.pt"
    ck.write_bytes(world["FA"].read_bytes())
    out = tmp_path / "fb.json"
    r = cli(_fill(F, world) + ["--init", str(world["B"]), "--checkpoint", str(ck), "--no-resume", "--out", str(out)],
            world["env"])
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["init"] == str(world["B"])
    # and the checkpoint now belongs to B's run: resuming it from A is refused in turn
    r = cli(_fill(F, world) + ["--checkpoint", str(ck)], world["env"])
    assert r.returncode == 2 and "other weights" in r.stderr


def test_mixed_shapes_train_with_a_common_crop(world, tmp_path):
    r = cli(["train", "--data-dir", str(world["mixed"]), "--profile", "ci", "--quiet", "--epochs", "1", *TINY_NET,
             "--crop-size", "16", "16", "--checkpoint", str(tmp_path / "m.pt")], world["env"])
    assert r.returncode == 0, r.stderr


def test_extending_epochs_resumes(world, tmp_path):
    ck = tmp_path / "A.pt"
    ck.write_bytes(world["A"].read_bytes())
    r = cli(_fill(T, world) + ["--checkpoint", str(ck), "--epochs", "2"], world["env"])
    assert r.returncode == 0, r.stderr
    import torch

    c = torch.load(ck, weights_only=False)
    assert c["epoch"] == 2 and c["config"]["lr_step_size"] == 1  # the decay schedule the run began with


def test_challenge_files_use_their_own_mask_and_need_no_target(world, tmp_path):
    out = tmp_path / "recons"
    r = cli(["evaluate", "--data-dir", str(world["challenge"]), "--profile", "ci", "--quiet",
             "--checkpoint", str(world["A"]), "--recon-dir", str(out)], world["env"])
    assert r.returncode == 0, r.stderr
    with h5py.File(out / "zero-filled" / "c0.h5", "r") as f:
        rec = f["reconstruction"][()]
    assert rec.shape == (2, SIZE, SIZE) and np.isfinite(rec).all()
    assert (out / "A.pt" / "c0.h5").is_file()
    from mrtl_core.data import SliceDataset

    ds = SliceDataset(world["challenge"] / "test", acceleration=8)  # the file's mask wins over R = 8
    with h5py.File(world["challenge"] / "test" / "c0.h5", "r") as f:
        mask = f["mask"][()].astype(bool)
    assert ds.effective_acceleration() == pytest.approx(SIZE / mask.sum())
    assert ds[0].target is None and ds[0].target_raw is None  # inference only


def test_evaluate_reference_does_not_depend_on_the_methods(world):
    import json

    from mrtl_core.data import SliceDataset

    s = SliceDataset(world["good"] / "test", with_kspace=True)[0]  # the clamped and the file's target differ
    assert (s.target[0].double() * s.std + s.mean - s.target_raw).abs().max() > 0.1 * s.target_raw.max()

    scores = []
    for methods in (["zero-filled"], ["zero-filled", "cg-sense"]):
        out = world["root"].parent / f"scores-{len(methods)}.json"
        r = cli(_fill(E, world) + ["--methods", *methods, "--cg-iters", "2", "--out", str(out)], world["env"])
        assert r.returncode == 0, r.stderr
        scores.append(json.loads(out.read_text())["results"][0]["per_slice"])
    assert scores[0] == scores[1]


# ------------------------------------------------------------------------------- interruption


def _sigint_as_in_a_terminal() -> None:
    """Start the child with SIGINT at its default, as a command typed in a terminal has it: a
    non-interactive shell that runs the test suite as a background job leaves SIGINT ignored, the
    child would inherit that, and Ctrl-C could not be simulated."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupt_says_where_the_checkpoint_is_and_how_to_resume(world, tmp_path, sig, code):
    ck = tmp_path / "run.pt"
    args = _fill(T, world)
    args[args.index("--epochs") + 1] = "100000"
    args += ["--checkpoint", str(ck)]
    proc = subprocess.Popen([sys.executable, "-m", "mrtl_core", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=world["env"], cwd=ROOT,
                            preexec_fn=_sigint_as_in_a_terminal)
    deadline = time.monotonic() + 60
    while not ck.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert ck.exists(), proc.communicate()[1] if proc.poll() is not None else "no checkpoint after 60 s"
    proc.send_signal(sig)
    try:   # the exit takes about a second; the wait is generous for a loaded machine
        _, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"no exit 240 s after {sig.name}; stderr: {err[-2000:]!r}")
    lines = err.splitlines()
    assert proc.returncode == code and len(lines) == 1 and "Traceback" not in err, (proc.returncode, err)
    assert str(ck) in lines[0] and "resume with: python -m mrtl_core train " in lines[0]
    assert not list(tmp_path.glob(".run.pt.*")), "a temporary checkpoint file was left behind"
    import shlex

    import torch

    epoch = torch.load(ck, weights_only=False)["epoch"]
    resume = shlex.split(lines[0].split("resume with: ", 1)[1])[3:]
    resume[resume.index("--epochs") + 1] = str(epoch + 1)  # the hint repeats the command; finish it soon
    r = cli(resume, world["env"])
    assert r.returncode == 0, r.stderr
    assert torch.load(ck, weights_only=False)["epoch"] == epoch + 1


if __name__ == "__main__":  # print the RELIABILITY lines of RESULTS.md: python tests/test_bad_inputs.py
    import tempfile

    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        w = make_world(Path(tmp))
        for c in CASES:
            r = cli(_fill(c.args, w), w["env"])
            line = r.stderr.strip().splitlines()[0] if r.stderr.strip() else "(no message)"
            line = line.replace(str(w["root"]) + "/", "").replace(" (run again with --debug for the traceback)", "")
            shown = c.args.replace(D, "<data>").replace("{root}/", "").replace("{", "").replace("}", "")
            print(f"- {c.name}: `{shown}` -> {r.returncode}: {line}")
