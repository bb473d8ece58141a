"""fastMRI-layout files, the slice dataset, subject splits and the dataset cache.

References are independent of the code under test: NumPy FFTs in float64 for the RSS, the
``ismrmrd`` schema parser for headers, raw ``h5py`` for the stored arrays.
"""
from __future__ import annotations

import multiprocessing as mp
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from mrtl_core import data, domains
from mrtl_core.data import DataError, SliceDataset, inspect_file, split_by_subject, write_fastmri_file
from mrtl_core.masks import RandomMaskFunc, center_lines, effective_acceleration, make_mask


def _kspace(rng, s=3, c=4, h=64, w=32):
    """Random complex k-space with a bright centre, like an image's spectrum."""
    k = rng.standard_normal((s, c, h, w)) + 1j * rng.standard_normal((s, c, h, w))
    k[..., h // 2 - 2 : h // 2 + 2, w // 2 - 2 : w // 2 + 2] *= 30
    return k.astype(np.complex64)


def _write(path, rng=None, patient_id="p0", s=3, c=4, h=64, w=32, recon=(32, 32), sens=True, **kw):
    rng = rng or np.random.default_rng(0)
    k = _kspace(rng, s, c, h, w)
    maps = _kspace(rng, s, c, h, w) if sens else None
    return write_fastmri_file(path, k, field_strength_T=3.0, fov_mm=(220.0, 220.0, 5.0), recon_size=recon,
                              patient_id=patient_id, acquisition="AXT2", sens_maps=maps, **kw), k, maps


def _rss_reference(k, recon):
    """Centred orthonormal inverse FFT in float64, centre crop, RSS: written out with NumPy only."""
    img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k.astype(np.complex128), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    h, w = img.shape[-2:]
    top, left = (h - recon[0]) // 2, (w - recon[1]) // 2
    img = img[..., top : top + recon[0], left : left + recon[1]]
    return np.sqrt((np.abs(img) ** 2).sum(axis=-3))


# ------------------------------------------------------------------------------- writer / reader


def test_round_trip_arrays_attrs_and_header(tmp_path):
    import ismrmrd.xsd

    path, k, maps = _write(tmp_path / "a.h5", extra_attrs={"domain": "brain-3T"}, protocol={"TR": 2000.0, "TE": 20.0, "sequence": "SE"})
    assert not list(tmp_path.glob(".*tmp"))  # the atomic writer left no temporary file
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["kspace"][()], k)
        np.testing.assert_array_equal(f["sens_maps"][()], maps)
        assert f["kspace"].dtype == np.complex64 and f["reconstruction_rss"].dtype == np.float32
        rss = f["reconstruction_rss"][()]
        assert rss.shape == (3, 32, 32)
        assert f.attrs["max"] == pytest.approx(rss.max())
        assert f.attrs["norm"] == pytest.approx(np.linalg.norm(rss), rel=1e-6)
        assert f.attrs["patient_id"] == "p0" and f.attrs["acquisition"] == "AXT2" and f.attrs["domain"] == "brain-3T"
        hdr = ismrmrd.xsd.CreateFromDocument(f["ismrmrd_header"][()])
    enc = hdr.encoding[0]
    assert (enc.encodedSpace.matrixSize.x, enc.encodedSpace.matrixSize.y) == (64, 32)
    assert (enc.reconSpace.matrixSize.x, enc.reconSpace.matrixSize.y) == (32, 32)
    assert enc.reconSpace.fieldOfView_mm.x == 220.0 and enc.encodedSpace.fieldOfView_mm.x == 440.0  # 2x readout
    assert hdr.acquisitionSystemInformation.systemFieldStrength_T == 3.0
    assert hdr.acquisitionSystemInformation.receiverChannels == 4
    assert hdr.sequenceParameters.TR == [2000.0]
    h = data.read_header(path)
    assert h["recon_size"] == (32, 32) and h["encoded_matrix"][:2] == (64, 32)
    assert h["field_strength_T"] == 3.0 and h["num_coils"] == 4
    info = inspect_file(path, check_values=True)
    assert (info.num_slices, info.num_coils, info.has_sens_maps, info.patient_id) == (3, 4, True, "p0")


def test_stored_target_is_rss_of_full_kspace(tmp_path):
    path, k, _ = _write(tmp_path / "a.h5")
    with h5py.File(path, "r") as f:
        stored = f["reconstruction_rss"][()]
    np.testing.assert_allclose(stored, _rss_reference(k, (32, 32)), rtol=1e-4, atol=1e-5)


def test_fully_sampled_input_equals_target(tmp_path):
    path, k, _ = _write(tmp_path / "a.h5")
    ds = SliceDataset(path, acceleration=1.0, with_kspace=True)
    for i in range(len(ds)):
        s = ds[i]
        assert s.mask.all()
        torch.testing.assert_close(s.image, s.target, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(s.target_raw.numpy(), _rss_reference(k[i], (32, 32)), rtol=1e-4, atol=1e-5)


def test_sample_keys_and_normalisation(tmp_path):
    path, k, maps = _write(tmp_path / "a.h5")
    ds = SliceDataset(path, acceleration=4, with_kspace=True)
    s = ds[1]
    assert isinstance(s, data.UnetSample)
    assert s._fields == ("image", "target", "mean", "std", "max_value", "fname", "slice_idx", "subject",
                         "masked_kspace", "mask", "sens_maps", "target_raw", "calibration")
    assert s.mean.shape == s.std.shape == s.max_value.shape == () and s.mask.shape == (32,) and s.mask.dtype == torch.bool
    assert s.sens_maps.shape == (4, 64, 32) and s.target_raw.shape == (32, 32)
    assert s.image.shape == s.target.shape == (1, 32, 32) and s.image.dtype == torch.float32
    assert s.masked_kspace.shape == (4, 64, 32) and s.masked_kspace.dtype == torch.complex64
    assert (s.fname, s.slice_idx, s.subject) == ("a.h5", 1, "p0")
    mask = s.mask.numpy()
    np.testing.assert_array_equal(s.masked_kspace.numpy(), k[1] * mask)
    np.testing.assert_array_equal(s.sens_maps.numpy(), maps[1])
    # the calibration scan: the stored k-space in the central 24 of 32 columns (4..27), zero elsewhere
    calib = np.zeros_like(k[1])
    calib[..., 4:28] = k[1][..., 4:28]
    np.testing.assert_array_equal(s.calibration.numpy(), calib)
    # the zero-filled input, recomputed independently from the masked k-space, then normalised
    zf = _rss_reference(k[1] * mask, (32, 32))
    expected = np.clip((zf - zf.mean()) / (zf.std(ddof=1) + 1e-11), -6, 6)
    np.testing.assert_allclose(s.image[0].numpy(), expected, rtol=1e-4, atol=1e-4)
    assert float(s.mean) == pytest.approx(zf.mean(), rel=1e-5)
    tgt = s.target_raw.numpy()
    np.testing.assert_allclose(s.target[0].numpy(), np.clip((tgt - s.mean.item()) / s.std.item(), -6, 6), rtol=1e-4, atol=1e-4)
    with h5py.File(path, "r") as f:
        assert float(s.max_value) == pytest.approx(f["reconstruction_rss"][()].max())
    # the file-free API gives the same
    out = data.unet_transform(k[1], mask, (32, 32), target=tgt)
    torch.testing.assert_close(out.image, s.image)
    assert torch.equal(out.target, s.target) and out.masked_kspace is None and out.fname == ""
    torch.testing.assert_close(data.zero_filled_rss(k[1] * mask, (32, 32)), torch.from_numpy(zf.astype(np.float32)), rtol=1e-4, atol=1e-5)
    # un-normalised, the (unclamped) target is the stored image again, one pair per image in a batch
    back = data.unnormalize(s.target[0], s.mean, s.std)
    assert back.dtype == torch.float64
    np.testing.assert_allclose(back.numpy(), tgt, rtol=1e-4, atol=1e-4 * tgt.max())
    two = data.unnormalize(torch.stack([s.target[0], s.target[0]]), torch.stack([s.mean, s.mean + 1]),
                           torch.stack([s.std, s.std]))
    torch.testing.assert_close(two[1] - two[0], torch.ones_like(back))


def test_validation_masks_are_deterministic_training_masks_vary(tmp_path):
    for i in range(2):
        _write(tmp_path / f"f{i}.h5", np.random.default_rng(i), patient_id=f"p{i}", w=64, recon=(32, 32), sens=False)
    a, b = SliceDataset(tmp_path, with_kspace=True), SliceDataset(sorted(tmp_path.glob("*.h5")), with_kspace=True)
    masks = [a[i].mask.numpy() for i in range(len(a))]
    for i in range(len(b)):
        np.testing.assert_array_equal(b[i].mask.numpy(), masks[i])
        np.testing.assert_array_equal(a[i].mask.numpy(), masks[i])  # and on a repeat visit
        assert effective_acceleration(masks[i]) == pytest.approx(4.0, rel=0.1)
        assert masks[i][center_lines(64, 0.08)].all()
    assert len({m.tobytes() for m in masks}) > 1  # seeded per slice, not one mask for all
    other = SliceDataset(tmp_path, with_kspace=True, split_seed=1)
    assert any(not np.array_equal(other[i].mask.numpy(), masks[i]) for i in range(len(other)))
    train = SliceDataset(tmp_path, with_kspace=True, seed_masks=False)
    torch.manual_seed(0)
    draws = [train[0].mask.numpy() for _ in range(4)]
    assert len({m.tobytes() for m in draws}) > 1
    torch.manual_seed(0)
    np.testing.assert_array_equal(train[0].mask.numpy(), draws[0])  # reproducible under manual_seed


def test_volume_masks_one_per_file_seeded_from_its_name(tmp_path):
    for i in range(2):
        _write(tmp_path / f"file{i}.h5", np.random.default_rng(i), patient_id=f"p{i}", s=4, w=64, sens=False)
    ds = SliceDataset(tmp_path, with_kspace=True, mask_seed="volume")
    by_file: dict[str, set] = {}
    for i in range(len(ds)):
        s = ds[i]
        by_file.setdefault(s.fname, set()).add(s.mask.numpy().tobytes())
        # fastMRI's seed, the file name's characters, through the dataset's mask distribution
        want = make_mask(64, 4, 0.08, seed=tuple(map(ord, s.fname)))
        np.testing.assert_array_equal(s.mask.numpy(), want)
    assert all(len(v) == 1 for v in by_file.values()) and len(set.union(*by_file.values())) == 2
    # the same in every split: fastMRI's seed is the file name alone
    again = SliceDataset(tmp_path, with_kspace=True, mask_seed="volume", split_seed=3)
    np.testing.assert_array_equal(again[1].mask.numpy(), ds[1].mask.numpy())
    # per slice, the other way: the slices of a file get different masks
    per_slice = SliceDataset(tmp_path, with_kspace=True, mask_seed="slice")
    assert len({per_slice[i].mask.numpy().tobytes() for i in range(4)}) > 1
    # training views draw afresh either way
    train = SliceDataset(tmp_path, with_kspace=True, mask_seed="volume", seed_masks=False)
    assert len({train[0].mask.numpy().tobytes() for _ in range(4)}) > 1
    with pytest.raises(ValueError, match="mask_seed"):
        SliceDataset(tmp_path, mask_seed="subject")


def _as_if_from_a_scanner(path):
    """Give an mrtl-written file a scanner's vendor in its header, as real fastMRI files have."""
    with h5py.File(path, "a") as f:
        header = f["ismrmrd_header"][()].replace(b"mrtl (simulated)", b"SIEMENS")
        del f["ismrmrd_header"]
        f.create_dataset("ismrmrd_header", data=np.bytes_(header))


def test_auto_mask_seed_keeps_mrtls_files_per_slice_and_seeds_other_files_per_volume(tmp_path):
    _write(tmp_path / "sim.h5", np.random.default_rng(0), patient_id="p0", s=4, w=64, sens=False)
    _write(tmp_path / "real.h5", np.random.default_rng(1), patient_id="p1", s=4, w=64, sens=False)
    _as_if_from_a_scanner(tmp_path / "real.h5")
    assert data.read_header(tmp_path / "real.h5")["system_vendor"] == "SIEMENS"
    assert data.read_header(tmp_path / "sim.h5")["system_vendor"] == "mrtl (simulated)"
    auto = SliceDataset(tmp_path, with_kspace=True)
    assert auto.mask_seed == "auto"
    slice_view = SliceDataset(tmp_path, with_kspace=True, mask_seed="slice")
    volume_view = SliceDataset(tmp_path, with_kspace=True, mask_seed="volume")
    for i in range(len(auto)):
        s = auto[i]
        ref = slice_view if s.fname == "sim.h5" else volume_view
        np.testing.assert_array_equal(s.mask.numpy(), ref[i].mask.numpy())
    assert len({auto[i].mask.numpy().tobytes() for i in range(len(auto)) if auto[i].fname == "real.h5"}) == 1
    assert len({auto[i].mask.numpy().tobytes() for i in range(len(auto)) if auto[i].fname == "sim.h5"}) > 1


def test_a_fastmri_signature_mask_function_in_the_dataset(tmp_path):
    _write(tmp_path / "file7.h5", s=3, w=64, sens=False)
    func = RandomMaskFunc([0.08], [4])
    ds = SliceDataset(tmp_path, with_kspace=True, mask_func=func, mask_seed="volume")
    want, _ = RandomMaskFunc([0.08], [4])((1, 64, 64, 2), None, tuple(map(ord, "file7.h5")))
    for i in range(3):
        assert ds[i].mask.dtype == torch.bool
        np.testing.assert_array_equal(ds[i].mask.numpy(), want.reshape(-1).numpy() > 0)


def test_dataloader_workers_open_files_lazily(tmp_path):
    _write(tmp_path / "a.h5", sens=False)
    ds = SliceDataset(tmp_path)
    ds[0]  # the parent opens a handle before the fork: workers must not reuse it
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="fork",
                                         collate_fn=data.collate)
    images = torch.cat([b.image for b in loader])
    torch.testing.assert_close(images, torch.stack([ds[i].image for i in range(len(ds))]))


def test_collate_batches_field_by_field_and_keeps_absent_fields_none(tmp_path):
    _write(tmp_path / "a.h5")
    plain, full = SliceDataset(tmp_path), SliceDataset(tmp_path, with_kspace=True)
    with pytest.raises(TypeError):  # torch's default collation refuses the None of absent k-space fields
        torch.utils.data.default_collate([plain[0], plain[1]])
    batch = data.collate([plain[0], plain[2]])
    assert isinstance(batch, data.UnetSample)
    assert batch.image.shape == batch.target.shape == (2, 1, 32, 32) and batch.mean.shape == batch.max_value.shape == (2,)
    assert batch.fname == ["a.h5", "a.h5"] and batch.subject == ["p0", "p0"] and batch.slice_idx.tolist() == [0, 2]
    assert batch.masked_kspace is None and batch.mask is None and batch.sens_maps is None and batch.target_raw is None
    torch.testing.assert_close(batch.image[1], plain[2].image, rtol=0, atol=0)
    loaded = next(iter(torch.utils.data.DataLoader(full, batch_size=3, collate_fn=data.collate)))
    assert loaded.masked_kspace.shape == loaded.sens_maps.shape == (3, 4, 64, 32) and loaded.mask.shape == (3, 32)
    assert loaded.target_raw.shape == (3, 32, 32)
    with pytest.raises(ValueError, match="'sens_maps': None in 1 of 2"):
        data.collate([full[0], full[1]._replace(sens_maps=None)])


def test_a_custom_transform_gets_the_slice_and_its_mask(tmp_path):
    path, k, maps = _write(tmp_path / "a.h5")
    seen = []

    def transform(kspace, mask, target, attrs, fname, slice_idx, sens_maps=None):
        seen.append(dict(kspace=kspace, mask=mask, target=target, attrs=attrs, fname=fname, slice_idx=slice_idx,
                         sens_maps=sens_maps))
        return ("mine", slice_idx)

    ds = SliceDataset(path, transform=transform)
    assert ds[2] == ("mine", 2)
    got = seen[-1]
    np.testing.assert_array_equal(got["kspace"].numpy(), k[2])  # as stored: the transform applies the mask
    np.testing.assert_array_equal(np.asarray(got["mask"]), ds.mask_for("a.h5", 2, 32))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(got["target"].numpy(), f["reconstruction_rss"][2])
        assert got["attrs"]["max"] == pytest.approx(float(f.attrs["max"]))
    assert got["attrs"]["recon_size"] == (32, 32) and got["attrs"]["patient_id"] == "p0"
    assert got["attrs"]["path"] == str(path) and got["attrs"]["acquisition"] == "AXT2"
    assert (got["fname"], got["slice_idx"], got["sens_maps"]) == ("a.h5", 2, None)  # maps read only when asked
    SliceDataset(path, transform=transform, with_kspace=True, crop_size=(16, 16))[1]
    np.testing.assert_array_equal(seen[-1]["sens_maps"], maps[1])
    assert seen[-1]["attrs"]["recon_size"] == (16, 16)
    # a training view draws its masks from torch's RNG before the transform: the same draws as the default's
    torch.manual_seed(5)
    mine = SliceDataset(path, transform=transform, seed_masks=False)[0]
    torch.manual_seed(5)
    default = SliceDataset(path, seed_masks=False, with_kspace=True)[0]
    assert mine == ("mine", 0)
    np.testing.assert_array_equal(np.asarray(seen[-1]["mask"]), default.mask.numpy())


def test_default_transform_is_unet_transform(tmp_path):
    path, _, _ = _write(tmp_path / "a.h5")
    implicit = SliceDataset(path, with_kspace=True)
    explicit = SliceDataset(path, transform=data.UnetTransform(with_kspace=True))  # it asks for the maps itself
    assert isinstance(implicit.transform, data.UnetTransform) and explicit.with_kspace
    for a, b in zip(implicit[1], explicit[1]):
        assert a == b if isinstance(a, (str, int)) else torch.equal(a, b)
    plain = SliceDataset(path)[1]
    assert plain.masked_kspace is None and plain.target_raw is None and torch.equal(plain.image, implicit[1].image)


def test_real_fastmri_sized_knee_file(tmp_path):
    rng = np.random.default_rng(0)
    shape = (2, 15, 640, 368)
    k = (rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32)).astype(np.complex64)
    path = write_fastmri_file(tmp_path / "file1000001.h5", k, field_strength_T=3.0, fov_mm=(140.0, 140.0, 3.0),
                              recon_size=(320, 320), patient_id="knee01", acquisition="CORPD_FBK")
    del k
    ds = SliceDataset(tmp_path, with_kspace=True)
    s = ds[1]
    assert s.image.shape == s.target.shape == (1, 320, 320)
    assert s.masked_kspace.shape == (15, 640, 368) and s.sens_maps is None
    assert effective_acceleration(s.mask) == pytest.approx(4.0, rel=0.05)
    assert data.read_header(path)["encoded_matrix"][:2] == (640, 368)


def test_recon_matrix_wider_than_image_is_cropped_to_a_square_as_fastmri_does(tmp_path):
    # real brain files with fewer phase-encode columns than the 320 recon matrix (fastMRI's FLAIR 203 case):
    # fastMRI's UnetDataTransform crops the square of the image's width (tests/test_fastmri_interop.py runs it)
    path, _, _ = _write(tmp_path / "a.h5", h=64, w=24, recon=(32, 32), sens=False,
                        reconstruction_rss=np.ones((3, 32, 32), np.float32))
    s = SliceDataset(path)[0]
    assert s.image.shape == s.target.shape == (1, 24, 24)
    assert data.inspect_file(path).recon_size == (24, 24)
    k = torch.ones((2, 64, 24), dtype=torch.complex64)
    assert data.zero_filled_rss(k, (32, 32)).shape == (24, 24)
    assert data.zero_filled_rss(k, (20, 24)).shape == (20, 24)  # as wide as the image: the matrix as asked
    assert data.zero_filled_rss(k, (80, 24)).shape == (64, 24)  # more rows than the image: clamped


# ------------------------------------------------------------------------------- bad input


def _corrupt(path, edit):
    with h5py.File(path, "a") as f:
        edit(f)


def _replace(key, value):
    def edit(f):
        del f[key]
        f[key] = value
    return edit


BAD_CASES = {
    "missing key": (lambda f: f.__delitem__("reconstruction_rss"), ["missing", "reconstruction_rss"]),
    "missing attr": (lambda f: f.attrs.__delitem__("max"), ["missing attribute", "max"]),
    "wrong dtype": (_replace("kspace", np.zeros((3, 4, 64, 32), np.float32)), ["kspace", "float32", "complex"]),
    "wrong rank": (_replace("kspace", np.zeros((4, 64, 32), np.complex64)), ["kspace", "rank 3", "rank 4"]),
    "coil mismatch": (_replace("sens_maps", np.zeros((3, 3, 64, 32), np.complex64)), ["sens_maps", "3 coils", "4"]),
    "slice mismatch": (_replace("reconstruction_rss", np.zeros((2, 32, 32), np.float32)), ["reconstruction_rss", "2 slices", "3"]),
    "bad header": (_replace("ismrmrd_header", np.bytes_(b"<not xml")), ["ismrmrd_header", "XML"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_malformed_file_names_file_and_fault(tmp_path, case):
    edit, words = BAD_CASES[case]
    path, _, _ = _write(tmp_path / f"bad_{case.replace(' ', '_')}.h5")
    _corrupt(path, edit)
    for call in (lambda: inspect_file(path), lambda: SliceDataset(tmp_path)):
        with pytest.raises(DataError) as err:
            call()
        msg = str(err.value)
        assert path.name in msg, msg
        for word in words:
            assert word in msg, (word, msg)


def test_truncated_file(tmp_path):
    path, _, _ = _write(tmp_path / "cut.h5")
    size = path.stat().st_size
    for keep in (size // 2, size - 100, 1000):
        with open(path, "r+b") as f:
            f.truncate(keep)
        with pytest.raises(DataError, match="cut.h5.*(truncated|corrupt)"):
            inspect_file(path)


def test_not_hdf5_and_empty_and_missing(tmp_path):
    (tmp_path / "notes.h5").write_text("this is not HDF5\n")
    with pytest.raises(DataError, match="notes.h5.*not an HDF5 file"):
        SliceDataset(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty.*no .h5 files"):
        SliceDataset(empty)
    with pytest.raises(DataError, match="nothere.h5.*no such file"):
        inspect_file(tmp_path / "nothere.h5")


def test_nan_kspace(tmp_path):
    rng = np.random.default_rng(0)
    k = _kspace(rng)
    k[1, 2, 5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):  # the writer refuses it
        write_fastmri_file(tmp_path / "x.h5", k, field_strength_T=1.5, fov_mm=(1, 1, 1), recon_size=(32, 32),
                           patient_id="p", acquisition="a")
    path, _, _ = _write(tmp_path / "nan.h5")
    _corrupt(path, _replace("kspace", k))  # a file from elsewhere may hold one
    ds = SliceDataset(path)  # the structure is valid: found when the slice is read
    ds[0]
    with pytest.raises(DataError, match="nan.h5.*slice 1.*NaN"):
        ds[1]
    with pytest.raises(DataError, match="nan.h5.*slice 1.*NaN"):
        inspect_file(path, check_values=True)


def test_skip_bad_files_warns_and_skips(tmp_path):
    _write(tmp_path / "good.h5", sens=False)
    (tmp_path / "junk.h5").write_bytes(b"\0" * 64)
    with pytest.warns(UserWarning, match="junk.h5.*not an HDF5"):
        ds = SliceDataset(tmp_path, skip_bad_files=True)
    assert len(ds) == 3 and {ds[i].fname for i in range(3)} == {"good.h5"}
    with pytest.raises(DataError, match="no usable files"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SliceDataset([tmp_path / "junk.h5"], skip_bad_files=True)


# ------------------------------------------------------------------------------- splits


def test_split_by_subject_never_shares_a_subject(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(12):  # 8 subjects, some scanned twice
        _write(tmp_path / f"f{i:02d}.h5", rng, patient_id=f"s{i % 8}", s=1, c=2, h=16, w=8, recon=(8, 8), sens=False)
    files = sorted(tmp_path.glob("*.h5"))
    split = split_by_subject(files, {"train": 0.5, "val": 0.25, "test": 0.25}, seed=3)
    subjects = {k: {inspect_file(p).patient_id for p in v} for k, v in split.items()}
    assert [len(subjects[k]) for k in ("train", "val", "test")] == [4, 2, 2]
    assert not (subjects["train"] & subjects["val"] or subjects["train"] & subjects["test"] or subjects["val"] & subjects["test"])
    assert sorted(p for v in split.values() for p in v) == files
    assert split == split_by_subject(list(reversed(files)), (0.5, 0.25, 0.25), seed=3)  # order-free, deterministic
    assert split != split_by_subject(files, (0.5, 0.25, 0.25), seed=4)
    counts = split_by_subject(tmp_path, {"train": None, "val": 1, "test": 2}, seed=0)
    assert [len({inspect_file(p).patient_id for p in counts[k]}) for k in ("train", "val", "test")] == [5, 1, 2]
    with pytest.raises(DataError, match="'test' would be empty"):
        split_by_subject(files, {"train": 0.95, "test": 0.04}, seed=0)
    with pytest.raises(DataError, match="only 8 exist"):
        split_by_subject(files, {"train": 6, "test": 3})
    assert [data.patient_id(p) for p in files[:3]] == ["s0", "s1", "s2"]
    with h5py.File(files[0], "a") as f:
        del f.attrs["patient_id"]
    with pytest.raises(DataError, match="f00.h5.*missing attribute 'patient_id'"):
        data.patient_id(files[0])


# ------------------------------------------------------------------------------- cache


def _fake_simulator(log: Path, delay: float = 0.0):
    def simulate_subject(domain, index, num_slices, size, seed=0):
        with open(log, "a") as f:
            f.write(f"{domain} {index} {seed}\n")
        time.sleep(delay)
        rng = np.random.default_rng([index, seed])
        return SimpleNamespace(kspace=_kspace(rng, num_slices, 2, 2 * size, size), sens_maps=None, domain=domain,
                               field_strength_T=1.5, patient_id=f"{seed}-{index:03d}", fov_mm=(220.0, 220.0, 5.0),
                               protocol={"sequence": "SE", "TR": 500.0, "TE": 15.0})
    return simulate_subject


def _calls(log):
    return log.read_text().splitlines() if log.exists() else []


def test_domain_cache_reuse_and_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv("MRTL_CACHE_DIR", str(tmp_path / "cache"))
    log = tmp_path / "calls.txt"
    monkeypatch.setattr(domains, "simulator", lambda: _fake_simulator(log))
    files = domains.domain_files("brain-1.5T", 3, 2, 16, seed=0, progress=False)
    assert [inspect_file(p).patient_id for p in files] == ["0-000", "0-001", "0-002"]
    assert len(_calls(log)) == 3
    assert domains.domain_files("brain-1.5T", 3, 2, 16, seed=0, progress=False) == files
    assert len(_calls(log)) == 3  # reused, not rebuilt
    again = domains.domain_files("brain-1.5T", 3, 2, 16, seed=1, progress=False)
    assert again[0].parent != files[0].parent and len(_calls(log)) == 6  # new seed: a new entry
    more = domains.domain_files("brain-1.5T", 5, 2, 16, seed=0, progress=False)
    assert len(_calls(log)) == 8  # only subjects 3 and 4 simulated; 0-2 reused from the smaller entry
    for a, b in zip(files, more):  # prefix-stable: subject i is the same whatever the count
        with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
            np.testing.assert_array_equal(fa["kspace"][()], fb["kspace"][()])
    monkeypatch.setattr(data, "DATA_VERSION", data.DATA_VERSION + 1)
    rebuilt = domains.domain_files("brain-1.5T", 3, 2, 16, seed=0, progress=False)
    assert rebuilt[0].parent != files[0].parent and len(_calls(log)) == 11  # a version bump resimulates


def _ask(cache_dir, log, args):
    """One independent process (spawned: no state shared with pytest) asking for a domain."""
    import os

    os.environ["MRTL_CACHE_DIR"] = cache_dir
    domains.simulator = lambda: _fake_simulator(Path(log), delay=0.3)
    return [str(p) for p in domains.domain_files(*args, progress=False)]


def test_concurrent_cache_requests_build_once(tmp_path):
    # spawn, not fork: a forked child of a process that already ran torch ops can deadlock in
    # torch's thread pool; spawned processes are also what two notebooks asking at once really are
    log = tmp_path / "calls.txt"
    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_ask, [(str(tmp_path / "cache"), str(log), ("knee-1.5T", 3, 1, 8, 0))] * 2)
    assert results[0] == results[1] and len(results[0]) == 3
    assert sorted(_calls(log)) == [f"knee-1.5T {i} 0" for i in range(3)]


# ------------------------------------------------------------------------------- real simulator


def test_cli_and_domain_files_with_the_simulator(tmp_path, monkeypatch, capsys):
    simulate = pytest.importorskip("mrtl_core.simulate")
    from mrtl_core.cli import main  # the real `python -m mrtl_core` dispatcher, in-process

    assert main(["simulate", "--list-domains"]) == 0
    assert "brain-1.5T" in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["simulate", "--domain", "brain-1.5T", "--subjects", "2", "--slices", "2", "--size", "32",
                 "--out", str(out), "--quiet", "--no-sens-maps"]) == 0
    assert main(["simulate", "--domain", "no-such-domain", "--out", str(out), "--quiet"]) == 2
    files = sorted(out.glob("*.h5"))
    assert len(files) == 2 and all(f.name.startswith("brain-1.5T_") for f in files)
    info = inspect_file(files[0], check_values=True)
    assert info.kspace_shape[2:] == (64, 32) and info.recon_size == (32, 32) and not info.has_sens_maps
    assert info.field_strength_T == pytest.approx(simulate.get_domain("brain-1.5T").field_strength_T)
    s = SliceDataset(out)[0]
    assert s.image.shape == (1, 32, 32) and torch.isfinite(s.image).all()

    monkeypatch.setenv("MRTL_CACHE_DIR", str(tmp_path / "cache"))
    cached = domains.domain_files("brain-1.5T", 2, 2, 32, seed=0, progress=False)
    assert [f.name for f in cached] == [f.name for f in files]
    with h5py.File(cached[0], "r") as a, h5py.File(files[0], "r") as b:
        np.testing.assert_array_equal(a["kspace"][()], b["kspace"][()])  # the CLI and the cache agree
        assert "sens_maps" in a


def test_atomic_write_gives_normal_permissions(tmp_path):
    """Records and cache files are read by web servers and other users: not mkstemp's 0600."""
    import os
    import stat

    from mrtl_core.cache import atomic_write

    mask = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "x.json", lambda tmp: tmp.write_text("{}"))
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
