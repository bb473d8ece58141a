"""Experiment building blocks: the equal-data twin (``native_unet``) and fine-tuning without early stopping."""
from __future__ import annotations

import pytest
import torch

from mrtl_core import data, experiment as ex
from mrtl_core.profiles import get_profile

TINY = get_profile("ci").replace(
    name="tiny-native", image_size=32, slices_per_subject=2, source_train_subjects=4, target_train_subjects=2,
    val_subjects=1, test_subjects=1, chans=4, num_pool_layers=2, pretrain_epochs=2, batch_size=4,
)


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MRTL_CACHE_DIR", str(tmp_path / "cache"))
    ex._memo.clear()
    yield tmp_path / "cache"
    ex._memo.clear()


def _ids(paths):
    return [data.patient_id(p) for p in paths]


def test_native_files_match_source_count_and_never_touch_held_out_subjects(cache_dir):
    splits = ex.domain_splits(TINY, "brain-3T", progress=False)
    files = ex.native_train_files(TINY, "brain-3T", progress=False)
    ids = _ids(files)
    assert len(files) == TINY.source_train_subjects
    assert len(set(ids)) == len(ids)
    held_out = set(_ids(splits["val"]) + _ids(splits["test"]))
    assert not held_out & set(ids)
    assert ids[: len(splits["train"])] == _ids(splits["train"])    # the target's own training split first
    assert _ids(ex.native_train_files(TINY, "brain-3T", progress=False)) == ids   # deterministic


def test_native_files_of_the_source_are_its_training_split(cache_dir):
    splits = ex.domain_splits(TINY, ex.SOURCE_DOMAIN, progress=False)
    assert ex.native_train_files(TINY, ex.SOURCE_DOMAIN, progress=False) == splits["train"]


def test_native_unet_trains_once_then_loads_the_same_weights(cache_dir):
    model, info = ex.native_unet(TINY, "brain-3T", progress=False)
    assert not info["cached"]
    assert info["num_train_slices"] == TINY.source_train_subjects * TINY.slices_per_subject
    again, info2 = ex.native_unet(TINY, "brain-3T", progress=False)
    assert info2["cached"]
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    # its own model, not the pre-trained one nor the full-split scratch one
    pre = ex.pretrained_unet(TINY, progress=False)[0]
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), pre.state_dict().values()))
    assert "native-brain-3T" in info["path"]


def test_finetune_without_early_stopping_runs_its_whole_budget(cache_dir):
    with_es, info_es = ex.finetune_run(TINY, "brain-3T", 2, seed=0, progress=False)
    assert info_es["history"][0]["epoch"] == 0                      # the start was validated
    model, info = ex.finetune_run(TINY, "brain-3T", 2, seed=0, early_stopping=False, max_steps=7,
                                  progress=False)
    assert info["steps"] == 7 and not info["stopped_early"]
    assert all("val_loss" not in row for row in info["history"])     # no validation split was used
    assert info["path"] != info_es["path"] and "no-es7" in info["path"]
    with pytest.raises(ValueError, match="max_steps"):
        ex.finetune_run(TINY, "brain-3T", 2, seed=0, max_steps=0, progress=False)
