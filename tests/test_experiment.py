"""Experiment building blocks: the equal-data twin (``native_unet``), fine-tuning without early stopping,
and the cache keys (one builder, unchanged hashes), the fine-tuning recipe and the memoised physics version."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mrtl_core import cache, data, domains, experiment as ex
from mrtl_core.profiles import get_profile

TINY = get_profile("ci").replace(
    name="tiny-native", image_size=32, slices_per_subject=2, source_train_subjects=4, target_train_subjects=2,
    val_subjects=1, test_subjects=1, chans=4, num_pool_layers=2, pretrain_epochs=2, batch_size=4,
)


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MRTL_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path / "cache"


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


# ------------------------------------------------------------------------------- cache keys
def _fake_domain_files(domain, num_subjects, num_slices, size, seed=0, progress=True, with_sens_maps=True):
    return [Path("/nowhere") / domains.subject_filename(domain, f"{domain}-s{seed}-{i:05d}") for i in range(num_subjects)]


@pytest.fixture()
def keys(monkeypatch):
    """The cache key of every model asked for, ``{name: key}``, without data or training: the domains
    are file names that carry their subject ids, the physics version is fixed, no model is built."""
    monkeypatch.setattr(domains, "physics_version", lambda domain=None: "test-physics")
    monkeypatch.setattr(domains, "domain_files", _fake_domain_files)
    monkeypatch.setattr(data, "patient_id", lambda p: Path(p).stem.split("_", 1)[1])
    seen: dict[str, dict] = {}

    def record(name, key, run, extra_info):
        seen[name] = key
        return None, {}

    monkeypatch.setattr(ex, "cached_model", record)
    yield seen


def _every_kind_of_model(profile) -> None:
    ex.pretrained_unet(profile, progress=False)
    ex.finetune_run(profile, "knee-1.5T", 4, 0)
    ex.finetune_run(profile, "knee-1.5T", 4, 0, from_scratch=True)
    ex.finetune_run(profile, "brain-1.5T", 1, 1, acceleration=8, strategy="last-layers")
    ex.finetune_run(profile, "knee-1.5T", 4, 0, rehearsal_slices=4)
    ex.finetune_run(profile, "brain-3T", 2, 0, early_stopping=False, max_steps=7)
    ex.scratch_full(profile, "brain-3T")
    ex.native_unet(profile, "knee-1.5T")


#: the ci profile's keys (physics "test-physics") as the hand-built dicts of before model_key gave them:
#: a change here re-trains every cached model, so it must be deliberate (bump EXPERIMENT_VERSION)
CI_KEY_HASHES = {
    "unet-brain-1.5T-R4-ci": "7ab94d342ca8",
    "end-to-end-knee-1.5T-R4-N4-s0-ci": "a2804858296c",
    "scratch-knee-1.5T-R4-N4-s0-ci": "abaf7e00d203",
    "last-layers-brain-1.5T-R8-N1-s1-ci": "b4521a241c28",
    "end-to-end+rehearsal4-knee-1.5T-R4-N4-s0-ci": "d0dc0ccff70c",
    "end-to-end-no-es7-brain-3T-R4-N2-s0-ci": "ef48233f3ba2",
    "scratch-full-brain-3T-R4-ci": "f9b0242f60ff",
    "native-knee-1.5T-R4-ci": "872c97f7e965",
}


def test_model_keys_are_unchanged(keys):
    _every_kind_of_model("ci")
    assert {name: cache.config_hash(key) for name, key in keys.items()} == CI_KEY_HASHES


def test_another_source_fine_tunes_that_domains_network_under_its_own_key(keys):
    ex.finetune_run("ci", "brain-3T-clinical", 4, 0, source="brain-1.5T-clinical")
    ex.native_unet("ci", "brain-1.5T-clinical")       # the network it starts from, by the pre-training recipe
    ex.finetune_run("ci", "brain-3T-clinical", 4, 0)  # the book's pre-trained network on the same target
    tuned = keys["end-to-end-from-brain-1.5T-clinical-brain-3T-clinical-R4-N4-s0-ci"]
    assert tuned["base"] == cache.config_hash(keys["native-brain-1.5T-clinical-R4-ci"])
    ex.pretrained_unet("ci")
    book = cache.config_hash(keys["unet-brain-1.5T-R4-ci"])
    assert keys["end-to-end-brain-3T-clinical-R4-N4-s0-ci"]["base"] == book == ex.source_network("ci", key_only=True)


def test_every_model_key_is_built_by_model_key(keys, monkeypatch):
    built = []
    real = ex.model_key

    def spy(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(ex, "model_key", spy)
    _every_kind_of_model(get_profile("ci"))
    assert len(keys) == 8
    for name, key in keys.items():
        assert any(key is b for b in built), f"{name}: its key was not built by model_key"


def test_model_key_leaves_later_parts_out_at_their_old_values():
    cfg = ex.finetune_config("ci", 4, 0)
    plain = ex.model_key("ci", "finetune", "knee-1.5T", 4, cfg, seed=0)
    assert ex.model_key("ci", "finetune", "knee-1.5T", 4, cfg, seed=0, rehearsal_slices=0, early_stopping=True) == plain
    assert ex.model_key("ci", "finetune", "knee-1.5T", 4, cfg, seed=0, rehearsal_slices=2)["rehearsal_slices"] == 2
    assert ex.model_key("ci", "finetune", "knee-1.5T", 4.0, cfg, seed=0) == plain     # R = 4 and 4.0: one model
    with pytest.raises(ValueError, match="'train'"):
        ex.model_key("ci", "finetune", "knee-1.5T", 4, cfg, train={})


def test_the_book_fine_tunes_with_finetune_config(keys):
    ex.finetune_run("ci", "knee-1.5T", 4, 3, max_steps=9)
    key = keys["end-to-end-knee-1.5T-R4-N4-s3-ci"]
    cfg = ex.finetune_config("ci", 4, 3, max_steps=9)
    assert cfg.monitor == "ssim_fg" and cfg.lr_step_size == ex.NO_LR_DECAY
    assert key == ex.model_key("ci", "finetune", "knee-1.5T", 4, cfg, base=key["base"], n_slices=4, seed=3,
                               strategy="end-to-end")


def test_finetune_config_validates_its_overrides_once():
    with pytest.raises(ValueError, match="max_steps"):
        ex.finetune_config("ci", 4, 0, max_steps=0)
    cfg = ex.finetune_config("ci", 4, 0, early_stopping=False, lr=0.5)
    assert cfg.patience is None and not cfg.validate_start and cfg.lr == 0.5


def test_profile_has_no_extra_settings():
    assert "extra" not in get_profile("ci").to_dict()
    assert not hasattr(ex, "_extra")


def _fresh_hash(files) -> str:
    import hashlib

    digest = hashlib.sha256()
    for src in files:
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    return "src-" + digest.hexdigest()[:12]


def test_physics_version_is_hashed_once_and_equals_a_fresh_hash(monkeypatch):
    from mrtl_core import simulate

    monkeypatch.delattr(simulate, "PHYSICS_VERSION", raising=False)
    here = Path(simulate.__file__).resolve().parent
    every = [here / "simulate.py", here / "epg.py", *sorted((here / "phantoms").glob("*.py"))]
    assert domains.physics_version() == _fresh_hash(every)
    # a domain's version hashes the simulator (with the echo trains it imports) and its own anatomy only
    for domain, anatomy in (("brain-1.5T", "brain"), ("brain-3T", "brain"), ("knee-1.5T", "knee"),
                            ("brain-3T-clinical", "brain")):
        own = [here / "simulate.py", here / "epg.py", here / "phantoms" / "__init__.py", here / "phantoms" / f"{anatomy}.py"]
        assert domains.physics_version(domain) == _fresh_hash(own), domain
    assert domains.physics_version("brain-1.5T") == domains.physics_version("brain-3T")
    assert domains.physics_version("brain-1.5T") != domains.physics_version("knee-1.5T")
    assert domains.physics_version("no-such-domain") == _fresh_hash(every)   # unknown: every phantom counts
    reads = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or b"")
    domains.physics_version(), domains.physics_version("knee-1.5T")
    assert reads == []          # memoised: no file read again


def test_a_knee_change_keeps_the_brains_data_and_models(tmp_path, monkeypatch):
    """Editing one phantom changes only its anatomy's version: a copy of the package with an edited
    knee hashes the brain as before and the knee anew."""
    import shutil

    from mrtl_core import simulate

    monkeypatch.delattr(simulate, "PHYSICS_VERSION", raising=False)
    here = Path(simulate.__file__).resolve().parent
    copy = tmp_path / "pkg"
    (copy / "phantoms").mkdir(parents=True)
    shutil.copy(here / "simulate.py", copy / "simulate.py")
    shutil.copy(here / "epg.py", copy / "epg.py")
    for src in (here / "phantoms").glob("*.py"):
        shutil.copy(src, copy / "phantoms" / src.name)
    before = {a: _fresh_hash(domains.physics_sources(copy, a)) for a in ("brain", "knee")}
    with open(copy / "phantoms" / "knee.py", "a") as f:
        f.write("\n# an edit\n")
    after = {a: _fresh_hash(domains.physics_sources(copy, a)) for a in ("brain", "knee")}
    assert after["brain"] == before["brain"] and after["knee"] != before["knee"]
    assert [p.name for p in domains.physics_sources(copy, "brain")] == ["simulate.py", "epg.py", "__init__.py", "brain.py"]


def test_select_slices_is_nested_in_n_and_checks_its_arguments():
    few, more = ex.select_slices(range(50), 5, seed=2), ex.select_slices(range(50), 20, seed=2)
    assert set(few.indices) < set(more.indices) and few.indices == sorted(few.indices)
    assert ex.select_slices(range(50), 5, seed=3).indices != few.indices
    with pytest.raises(ValueError, match=r"n_slices must lie in \[1, 50\]"):
        ex.select_slices(range(50), 51, seed=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        ex.select_slices(range(50), 5, seed=-1)


def test_a_network_of_another_seed_is_its_own_model_and_seed_0_is_the_books(cache_dir, keys):
    ex.pretrained_unet("ci", progress=False, seed=1)
    ex.native_unet("ci", "knee-1.5T", seed=2)
    ex.scratch_full("ci", "brain-3T", seed=1)
    assert set(keys) == {"unet-brain-1.5T-R4-ci-s1", "native-knee-1.5T-R4-ci-s2", "scratch-full-brain-3T-R4-ci-s1"}
    assert keys["unet-brain-1.5T-R4-ci-s1"]["train"]["seed"] == 1
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        ex.pretrained_unet("ci", progress=False, seed=-1)


def test_seeds_train_different_networks_from_the_same_recipe(cache_dir):
    zero, info0 = ex.native_unet(TINY, "brain-3T", progress=False)
    one, info1 = ex.native_unet(TINY, "brain-3T", progress=False, seed=1)
    assert info1["path"] != info0["path"] and info1["name"].endswith("-s1")
    assert any(not torch.equal(a, b) for a, b in zip(zero.state_dict().values(), one.state_dict().values()))
    assert info1["history"][-1]["epoch"] == info0["history"][-1]["epoch"] == TINY.pretrain_epochs


def test_a_learning_rate_of_its_own_is_in_the_key_and_the_name(keys):
    """scratch-on-N with a tuned rate (``finetune_recipes.py --scratch``): the rate is the run's, its
    key differs from the profile's rate, and the run without it keeps its key."""
    ex.finetune_run("ci", "knee-1.5T", 4, 0, from_scratch=True)
    ex.finetune_run("ci", "knee-1.5T", 4, 0, from_scratch=True, recipe="flips", lr=3e-3)
    assert cache.config_hash(keys["scratch-knee-1.5T-R4-N4-s0-ci"]) == CI_KEY_HASHES["scratch-knee-1.5T-R4-N4-s0-ci"]
    tuned = keys["scratch-flips-lr0.003-knee-1.5T-R4-N4-s0-ci"]
    assert tuned["train"]["lr"] == 3e-3 and tuned["train"]["augment"] == "flips"
    assert keys["scratch-knee-1.5T-R4-N4-s0-ci"]["train"]["lr"] == get_profile("ci").lr
    for bad in (0.0, -1e-3, float("nan"), True, "1e-3"):
        with pytest.raises(ValueError, match="lr must be a finite number > 0"):
            ex.finetune_run("ci", "knee-1.5T", 4, 0, from_scratch=True, lr=bad)
