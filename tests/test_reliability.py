"""Faults the library itself must catch: cache damage, killed writers, silent wrong answers.

(The CLI's answers to bad inputs are in ``test_bad_inputs.py``.)
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from mrtl_core import cache, data, domains, experiment
from mrtl_core.masks import make_mask
from mrtl_core.sense import cg_sense

# ------------------------------------------------------------------------------- silent wrong answers


@pytest.mark.parametrize("cols, accel, words", [
    (64, 65, "exceeds the 64 phase-encode columns"),    # used to give R = 64, reported as 65
    (64, 1e9, "exceeds the 64 phase-encode columns"),   # default centre fraction: used to give R = 64
    (2, 8, "exceeds the 2 phase-encode columns"),       # used to give R = 2
    (64, True, "acceleration must be a finite number"),  # bool: used to mean R = 1
])
def test_masks_refuse_what_they_cannot_draw(cols, accel, words):
    with pytest.raises(ValueError, match=words):
        make_mask(cols, accel)


def test_masks_at_the_column_limit_still_work():
    assert make_mask(64, 64, center_fraction=1 / 64, seed=0).sum() == 1
    assert make_mask(16, np.float32(4.0), seed=0).sum() == 4


def _sense_problem(coils=2, h=8, w=8):
    rng = np.random.default_rng(0)
    k = torch.from_numpy((rng.standard_normal((coils, h, w)) + 1j * rng.standard_normal((coils, h, w))).astype(np.complex64))
    maps = torch.ones_like(k) / np.sqrt(coils)
    return k, maps, torch.ones(w, dtype=torch.bool)


def test_cg_sense_refuses_zero_maps_and_an_empty_mask():
    k, maps, mask = _sense_problem()
    assert cg_sense(k, maps, mask, max_iter=2).abs().max() > 0
    with pytest.raises(ValueError, match="maps are all zero"):
        cg_sense(k, torch.zeros_like(maps), mask)
    with pytest.raises(ValueError, match="mask samples no k-space column"):
        cg_sense(k, maps, torch.zeros_like(mask))


# ------------------------------------------------------------------------------- cache


def _fake_simulator(log: list):
    def simulate_subject(domain, index, num_slices, size, seed=0):
        log.append(index)
        rng = np.random.default_rng([index, seed])
        k = (rng.standard_normal((num_slices, 2, 2 * size, size)) + 1j).astype(np.complex64)
        return SimpleNamespace(kspace=k, sens_maps=None, domain=domain, field_strength_T=1.5,
                               patient_id=f"{seed}-{index:03d}", fov_mm=(220.0, 220.0, 5.0), protocol={})
    return simulate_subject


@pytest.fixture
def fake_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRTL_CACHE_DIR", str(tmp_path / "cache"))
    log: list[int] = []
    monkeypatch.setattr(domains, "simulator", lambda: _fake_simulator(log))
    return log


def _files(n):
    return domains.domain_files("knee-1.5T", n, 1, 8, seed=0, progress=False)


def _flip(path: Path, offset: int = -16) -> None:
    """Damage a file without changing its size (a bit flip near its end, in the data)."""
    with open(path, "r+b") as f:
        f.seek(offset, os.SEEK_END)
        byte = f.read(1)
        f.seek(offset, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_reused_subject_files_are_copies_not_links(fake_cache):
    small = _files(2)
    large = _files(3)
    assert fake_cache == [0, 1, 2]  # subjects 0 and 1 reused, not simulated again
    for a, b in zip(small, large):
        assert os.stat(a).st_ino != os.stat(b).st_ino and os.stat(b).st_nlink == 1
        assert a.read_bytes() == b.read_bytes()


def test_a_damaged_donor_is_not_copied_into_a_new_entry(fake_cache):
    small = _files(2)
    _flip(small[0])
    with pytest.warns(UserWarning, match=f"damaged cache file .*{small[0].name}"):
        large = _files(3)
    assert fake_cache == [0, 1, 0, 2]  # subject 0 simulated afresh, subject 1 copied
    with h5py.File(large[0], "r") as f:
        f["kspace"][()]  # the new copy reads
    assert cache.verify_entry(large[0].parent, full=True) == []
    problems = cache.verify_entry(small[0].parent, full=True)
    assert len(problems) == 1 and small[0].name in problems[0] and "sha256" in problems[0]
    assert list(cache.verify_cache(full=True)) == [small[0].parent]


@pytest.mark.parametrize("damage", ["truncate", "delete", "order {}", "order deleted"])
def test_a_damaged_entry_is_reported_and_rebuilt(fake_cache, damage):
    files = _files(2)
    entry = files[0].parent
    if damage == "truncate":
        os.truncate(files[1], files[1].stat().st_size // 2)
    elif damage == "delete":
        files[1].unlink()
    elif damage == "order {}":
        (entry / "order.json").write_text("{}")
    else:
        (entry / "order.json").unlink()
    with pytest.warns(UserWarning, match=f"damaged cache entry {entry}"):
        again = _files(2)
    assert again == files and fake_cache == [0, 1, 0, 1]
    assert cache.verify_entry(entry, full=True) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _files(2) == files and len(fake_cache) == 4  # intact now: a plain hit


def test_an_entry_from_before_checksums_is_adopted_then_guarded(fake_cache):
    files = _files(2)
    entry = files[0].parent
    (entry / cache.MANIFEST).unlink()  # as written by an older version
    assert _files(2) == files and len(fake_cache) == 2  # no rebuild: checksums recorded now
    assert (entry / cache.MANIFEST).is_file()
    (entry / "order.json").write_text("{}")
    with pytest.warns(UserWarning, match="damaged cache entry"):
        _files(2)


def test_killed_builds_leave_no_temporary_folders(fake_cache, tmp_path):
    parent = tmp_path / "cache" / "datasets"
    parent.mkdir(parents=True)
    files = _files(1)
    config_name = files[0].parent.name
    stale = [parent / f".{config_name}.99999999.abcd", parent / f".{config_name}.legacy1"]
    for d in stale:
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "big.h5").write_bytes(b"\0" * 1000)
    files[0].unlink()  # damage: the next call rebuilds under the lock, and clears what killed builds left
    with pytest.warns(UserWarning):
        _files(1)
    assert not any(d.exists() for d in stale)
    assert sorted(p.name for p in parent.iterdir()) == [config_name, config_name + ".lock"]


def test_killed_builds_of_other_entries_are_cleaned_too(fake_cache, tmp_path):
    parent = tmp_path / "cache" / "datasets"
    dead = parent / ".brain-3T-0123456789ab.99999999.abcd1234"   # killed while building another entry
    live = parent / f".brain-3T-0123456789ab.{os.getppid()}.abcd1234"  # still building
    legacy = parent / ".brain-3T-0123456789ab.abcd1234"           # no pid: only its own entry's lock may remove it
    for d in (dead, live, legacy):
        (d / "sub").mkdir(parents=True)
    _files(1)
    assert [d.exists() for d in (dead, live, legacy)] == [False, True, True]


def test_killed_writers_leave_no_temporary_files(tmp_path):
    target = tmp_path / "ck.pt"
    dead = tmp_path / ".ck.pt.99999999.x1abcdef.tmp"        # a writer killed by SIGKILL
    live = tmp_path / f".ck.pt.{os.getppid()}.x2abcdef.tmp"  # a writer that is still running
    other = tmp_path / ".other.pt.99999999.x3abcdef.tmp"    # another file's
    mine = tmp_path / ".ck.pt.bak"                          # not a temporary file at all
    old = tmp_path / ".ck.pt.x4abcdef.tmp"                  # pid-less (older versions), two hours old
    young = tmp_path / ".ck.pt.x5abcdef.tmp"                # pid-less, just written: may be live
    for p in (dead, live, other, mine, old, young):
        p.write_bytes(b"partial")
    import tempfile

    fd, real = tempfile.mkstemp(prefix=".ck.pt.99999999.", suffix=".tmp", dir=tmp_path)  # the writers' own naming
    os.close(fd)
    os.utime(old, (os.path.getmtime(old) - 7200,) * 2)
    os.utime(mine, (os.path.getmtime(mine) - 7200,) * 2)
    cache.atomic_write(target, lambda tmp: Path(tmp).write_text("done"))
    assert target.read_text() == "done"
    assert [p.exists() for p in (dead, live, other, mine, old, young)] == [False, True, True, True, False, True]
    assert not Path(real).exists()


@pytest.mark.parametrize("damage", ["{}", "deleted", "not json"])
def test_a_damaged_model_entry_is_rebuilt(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("MRTL_CACHE_DIR", str(tmp_path / "cache"))
    builds = []

    def build(tmp: Path) -> None:
        builds.append(tmp)
        (tmp / "model.pt").write_bytes(b"weights")
        info = {"name": "m", "history": [], "best_epoch": 1, "steps": 3}
        (tmp / "info.json").write_text(json.dumps(info))

    entry = cache.cached_dir("models", "m", {"k": 1}, build, validate=experiment.check_model_entry)
    for legacy in (False, True):
        if legacy:
            (entry / cache.MANIFEST).unlink()  # an entry from before checksums: validate() must catch it
        info = entry / "info.json"
        if damage == "deleted":
            info.unlink()
        else:
            info.write_text("{}" if damage == "{}" else "{not json")
        with pytest.warns(UserWarning, match=f"damaged cache entry {entry}.*info.json"):
            again = cache.cached_dir("models", "m", {"k": 1}, build, validate=experiment.check_model_entry)
        assert again == entry and json.loads(info.read_text())["name"] == "m"
    assert len(builds) == 3


# ------------------------------------------------------------------------------- checkpoints


def test_training_clears_what_a_killed_run_left_beside_its_checkpoint(tmp_path):
    from mrtl_core.data import write_fastmri_file
    from mrtl_core.train import TrainConfig, train
    from mrtl_core.unet import Unet

    rng = np.random.default_rng(0)
    k = (rng.standard_normal((2, 2, 32, 16)) + 1j * rng.standard_normal((2, 2, 32, 16))).astype(np.complex64)
    path = write_fastmri_file(tmp_path / "a.h5", k, field_strength_T=1.5, fov_mm=(1, 1, 1), recon_size=(16, 16),
                              patient_id="p", acquisition="a")
    ck = tmp_path / "run.pt"
    left = tmp_path / ".run.pt.99999999.k1llabcd.tmp"  # SIGKILL during torch.save
    left.write_bytes(b"\0" * 2048)
    torch.manual_seed(0)
    train(Unet(chans=2, num_pool_layers=1), data.SliceDataset(path, seed_masks=False), None,
          TrainConfig(epochs=1, batch_size=2, progress=False, device="cpu"), checkpoint_path=ck)
    assert ck.is_file() and not left.exists()
    with pytest.raises(ValueError, match="another run.*lr 0.001 -> 0.01"):
        train(Unet(chans=2, num_pool_layers=1), data.SliceDataset(path, seed_masks=False), None,
              TrainConfig(epochs=2, batch_size=2, lr=0.01, progress=False, device="cpu"), checkpoint_path=ck)


def test_a_flipped_bit_in_cached_weights_is_caught(tmp_path, monkeypatch):
    monkeypatch.setenv("MRTL_CACHE_DIR", str(tmp_path / "cache"))
    builds = []

    def build(tmp: Path) -> None:
        builds.append(tmp)
        (tmp / "model.pt").write_bytes(bytes(range(256)) * 8192)  # 2 MiB: above the datasets' quick limit
        (tmp / "info.json").write_text(json.dumps({"name": "m", "history": [], "best_epoch": 1, "steps": 3}))

    def ask():
        return cache.cached_dir("models", "m", {"k": 2}, build, validate=experiment.check_model_entry,
                                hash_limit=1 << 30)

    entry = ask()
    assert ask() == entry and len(builds) == 1
    _flip(entry / "model.pt", offset=-1000)
    with pytest.warns(UserWarning, match="model.pt: content differs"):
        assert ask() == entry
    assert len(builds) == 2 and cache.verify_entry(entry, full=True) == []


# ------------------------------------------------------------------------------- datasets


def _tiny_file(path: Path, seed: int, size: int = 16) -> Path:
    from mrtl_core.data import write_fastmri_file

    rng = np.random.default_rng(seed)
    k = (rng.standard_normal((2, 2, 2 * size, size)) + 1j * rng.standard_normal((2, 2, 2 * size, size))).astype(np.complex64)
    return write_fastmri_file(path, k, field_strength_T=1.5, fov_mm=(1, 1, 1), recon_size=(size, size),
                              patient_id=f"p{seed}", acquisition="a")


def test_a_file_with_its_own_mask_is_never_masked_again(tmp_path):
    path = _tiny_file(tmp_path / "m.h5", 0)
    mask = np.zeros(16, np.float32)
    mask[[0, 5, 7, 8, 9, 12]] = 1
    with h5py.File(path, "a") as f:
        f["kspace"][...] = f["kspace"][()] * mask.astype(bool)
        f["mask"] = mask
    for accel in (2, 8):
        ds = data.SliceDataset(path, acceleration=accel, with_kspace=True)
        for i in range(len(ds)):
            s = ds[i]
            assert np.array_equal(s.mask.numpy(), mask.astype(bool))  # the file's, whatever R was asked
            assert s.target is not None  # this one has reconstruction_rss: it can be scored
        assert ds.effective_acceleration() == pytest.approx(16 / 6)


def test_mixed_shapes_are_refused_when_the_dataset_opens(tmp_path):
    _tiny_file(tmp_path / "a.h5", 0, size=16)
    _tiny_file(tmp_path / "b.h5", 1, size=24)
    with pytest.raises(data.DataError, match=r"2 shapes.*(16x16 in a\.h5.*24x24 in b\.h5|24x24 in b\.h5.*16x16 in a\.h5)"):
        data.SliceDataset(tmp_path)
    assert len(data.SliceDataset(tmp_path, crop_size=(16, 16))) == 4  # one crop for all: fine


def test_evaluate_and_configs_refuse_empty_or_negative_settings(tmp_path):
    from mrtl_core.evaluate import evaluate
    from mrtl_core.train import TrainConfig

    ds = data.SliceDataset(_tiny_file(tmp_path / "a.h5", 0))
    with pytest.raises(ValueError, match="max_slices must be None or an integer >= 1, got 0"):
        evaluate("zero-filled", ds, max_slices=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        TrainConfig(seed=-1)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -2"):
        experiment.target_slices("ci", "knee-1.5T", 1, seed=-2)
