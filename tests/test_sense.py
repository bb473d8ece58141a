"""SENSE operator and CG-SENSE against independent references: dot test, dense solves, sigpy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

sp = pytest.importorskip("sigpy")
import sigpy.mri as mr  # noqa: E402

from mrtl_core.fft import fft2c, fft2c_np  # noqa: E402
from mrtl_core.masks import center_lines, make_mask  # noqa: E402
from mrtl_core.sense import SenseOp, cg_sense, detect_acs, estimate_maps  # noqa: E402

C64, C128 = torch.complex64, torch.complex128


def _crandn(gen: torch.Generator, *shape, dtype=C128) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=dtype)


def _phantom(n_rows: int, n_cols: int) -> np.ndarray:
    """A smooth ellipse with a gentle intensity ramp and phase, zero outside (complex128)."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, n_rows), np.linspace(-1, 1, n_cols), indexing="ij")
    support = (xx / 0.75) ** 2 + (yy / 0.85) ** 2 < 1
    inner = ((xx - 0.2) / 0.25) ** 2 + ((yy + 0.1) / 0.35) ** 2 < 1
    img = support * (1.0 + 0.4 * xx) + 0.6 * inner
    return (img * np.exp(1j * 0.5 * yy)).astype(np.complex128)


def _birdcage(coils: int, n_rows: int, n_cols: int) -> np.ndarray:
    """sigpy birdcage maps normalised so that sum_c |S_c|^2 = 1 (complex128)."""
    maps = mr.birdcage_maps((coils, n_rows, n_cols)).astype(np.complex128)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ------------------------------------------------------------------------------------------ operator
@pytest.mark.parametrize("mask_kind", ["columns", "full", "per-slice"])
@pytest.mark.parametrize("shape", [(4, 12, 10), (3, 11, 9)])  # odd sizes: fftshift != ifftshift
def test_dot_test_and_normal(shape, mask_kind):
    gen = torch.Generator().manual_seed(1)
    c, h, w = shape
    lead = (2,) if mask_kind == "per-slice" else ()
    maps = _crandn(gen, *lead, c, h, w)
    if mask_kind == "columns":
        mask = torch.rand(w, generator=gen) > 0.5
    elif mask_kind == "full":
        mask = torch.rand(h, w, generator=gen) > 0.5
    else:
        mask = torch.rand(2, 1, 1, w, generator=gen) > 0.5
    op = SenseOp(maps, mask)
    x = _crandn(gen, *lead, h, w)
    y = _crandn(gen, *lead, c, h, w)
    lhs = torch.vdot(op.forward(x).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), op.adjoint(y).flatten())
    assert abs(lhs - rhs) / abs(lhs) < 1e-10
    # The fast, shift-free normal operator equals the plain A^H A.
    ref = op.adjoint(op.forward(x))
    assert (op.normal(x) - ref).norm() / ref.norm() < 1e-12


@pytest.mark.parametrize("mask_kind", ["columns", "full"])
def test_public_adjoint_and_normal_operators(mask_kind):
    """op.H and op.N (sigpy style) pass the dot test, and the shifted kernel cg_sense uses is A^H A."""
    gen = torch.Generator().manual_seed(2)
    c, h, w = 3, 11, 9  # odd: fftshift != ifftshift
    maps = _crandn(gen, c, h, w)
    mask = torch.rand(w, generator=gen) > 0.5 if mask_kind == "columns" else torch.rand(h, w, generator=gen) > 0.5
    op = SenseOp(maps, mask)
    assert op.shift_dims == ((-1,) if mask_kind == "columns" else (-2, -1))
    x, x2, y = _crandn(gen, h, w), _crandn(gen, h, w), _crandn(gen, c, h, w)
    assert (op.H.ishape, op.H.oshape, op.N.ishape, op.N.oshape) == (op.oshape, op.ishape, op.ishape, op.ishape)
    # <A x, y> == <x, A^H y>, with the adjoint reached through the public operator
    lhs = torch.vdot(op(x).flatten(), y.flatten())
    assert abs(lhs - torch.vdot(x.flatten(), op.H(y).flatten())) / abs(lhs) < 1e-10
    assert torch.equal(op.H(y), op.adjoint(y)) and torch.equal(op.H.H(x), op.forward(x))
    # A^H A is self-adjoint and positive semi-definite: <N x, x2> == <x, N x2>, <N x, x> >= 0
    nx = op.N(x)
    lhs = torch.vdot(nx.flatten(), x2.flatten())
    assert abs(lhs - torch.vdot(x.flatten(), op.N.H(x2).flatten())) / abs(lhs) < 1e-10
    assert torch.vdot(x.flatten(), nx.flatten()).real >= 0
    ref = op.adjoint(op.forward(x))
    assert (nx - ref).norm() / ref.norm() < 1e-12
    # the shifted coordinates: a permutation there and back, and the kernel commutes with it
    xs = op.to_shifted(x)
    assert torch.equal(op.from_shifted(xs), x)
    out = torch.empty_like(xs)
    assert op.normal_shifted(xs, out=out) is out
    assert torch.equal(op.from_shifted(out), nx)


def test_forward_matches_sigpy_sense_linop():
    """Same convention as sigpy: centred orthonormal FFT, weights = mask."""
    gen = torch.Generator().manual_seed(2)
    maps, x = _crandn(gen, 4, 8, 6), _crandn(gen, 8, 6)
    mask = make_mask(6, 2, center_fraction=0.34, seed=0)
    A_sp = mr.linop.Sense(maps.numpy(), weights=np.broadcast_to(mask, (8, 6)).astype(float))
    np.testing.assert_allclose(SenseOp(maps, mask).forward(x).numpy(), A_sp(x.numpy()), atol=1e-12)
    np.testing.assert_allclose(fft2c(x).numpy(), sp.fft(x.numpy(), axes=(-2, -1)), atol=1e-12)


# ------------------------------------------------------------------------------------------ CG-SENSE
def _dense_problem(seed=3, coils=4, h=12, w=10):
    gen = torch.Generator().manual_seed(seed)
    maps = _crandn(gen, coils, h, w)
    mask = torch.from_numpy(make_mask(w, 2, center_fraction=0.2, seed=seed))
    op = SenseOp(maps, mask)
    eye = torch.eye(h * w, dtype=C128)
    A = torch.stack([op.forward(e.reshape(h, w)).flatten() for e in eye], dim=1)  # explicit matrix
    y = (op.forward(_crandn(gen, h, w)) + 0.05 * _crandn(gen, coils, h, w)) * mask
    return maps, mask, A, y


@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_cg_sense_matches_dense_solve(lam):
    maps, mask, A, y = _dense_problem()
    h, w = maps.shape[-2:]
    # Normal equations solved densely; at lam = 0, the least-squares solution via lstsq on A.
    if lam == 0:
        ref = torch.linalg.lstsq(A, y.flatten().unsqueeze(-1)).solution.squeeze(-1)
    else:
        AhA = A.conj().T @ A + lam * torch.eye(h * w, dtype=C128)
        ref = torch.linalg.solve(AhA, A.conj().T @ y.flatten())
    x = cg_sense(y, maps, mask, lam=lam, max_iter=300, tol=1e-13)
    assert x.shape == (h, w) and x.dtype == C128
    assert _rel(x.flatten().numpy(), ref.numpy()) < 1e-6


def _sigpy_case(dtype, n=48, coils=8, accel=4):
    maps = _birdcage(coils, n, n)
    mask = make_mask(n, accel, seed=5)
    rng = np.random.default_rng(5)
    noise = 0.01 * (rng.standard_normal((coils, n, n)) + 1j * rng.standard_normal((coils, n, n)))
    ksp = (fft2c_np(maps * _phantom(n, n)) + noise) * mask
    return maps.astype(dtype), ksp.astype(dtype), mask


@pytest.mark.parametrize("dtype, bound", [(np.complex128, 1e-3), (np.complex64, 1e-2)])
@pytest.mark.parametrize("lam", [0.0, 0.01])
def test_cg_sense_matches_sigpy_sense_recon(dtype, bound, lam):
    maps, ksp, mask = _sigpy_case(dtype)
    weights = np.broadcast_to(mask, ksp.shape[-2:]).astype(np.real(ksp).dtype)
    # sigpy: min 1/2||P F S x - y||^2 + lamda/2 ||x||^2 -> (A^H A + lamda I) x = A^H y, as ours.
    ref = mr.app.SenseRecon(ksp, maps, lamda=lam, weights=weights, max_iter=60, tol=0, show_pbar=False).run()
    ours = cg_sense(torch.from_numpy(ksp), torch.from_numpy(maps), mask, lam=lam, max_iter=60, tol=0)
    assert ours.dtype == torch.from_numpy(ksp).dtype
    assert _rel(ours.numpy(), ref) < bound


@pytest.mark.parametrize("kind", ["random", "equispaced"])
def test_cg_sense_beats_zero_filled_at_r4(kind):
    n, coils = 96, 8
    maps = _birdcage(coils, n, n)
    truth = _phantom(n, n)
    mask = make_mask(n, 4, kind=kind, seed=11)
    ksp = torch.from_numpy(fft2c_np(maps * truth) * mask).to(C64)
    maps_t = torch.from_numpy(maps).to(C64)
    zero_filled = SenseOp(maps_t, mask).adjoint(ksp)  # coil-combined zero-filled image
    x = cg_sense(ksp, maps_t, mask, max_iter=30)
    err_zf = _rel(zero_filled.abs().numpy(), np.abs(truth))
    err_cg = _rel(x.abs().numpy(), np.abs(truth))
    # Birdcage maps at R = 4 are ill-conditioned: 30 iterations remove much, not all, aliasing.
    assert err_cg < 0.65 * err_zf, (err_cg, err_zf)


def test_batched_equals_per_slice_and_history_decreases():
    gen = torch.Generator().manual_seed(7)
    s, coils, h, w = 3, 4, 24, 20
    maps = _crandn(gen, s, coils, h, w)
    masks = torch.stack([torch.from_numpy(make_mask(w, 3, seed=i)) for i in range(s)])[:, None, None, :]
    y = _crandn(gen, s, coils, h, w) * masks
    batch, hist = cg_sense(y, maps, masks, lam=0.01, max_iter=40, tol=0, return_history=True)
    assert batch.shape == (s, h, w) and hist.shape == (s, 40)
    for i in range(s):
        single = cg_sense(y[i], maps[i], masks[i, 0, 0], lam=0.01, max_iter=40, tol=0)
        assert _rel(batch[i].numpy(), single.numpy()) < 1e-10
    shared = cg_sense(y, maps[0], masks, lam=0.01, max_iter=40, tol=0)  # one map set for all slices
    single = cg_sense(y[2], maps[0], masks[2, 0, 0], lam=0.01, max_iter=40, tol=0)
    assert _rel(shared[2].numpy(), single.numpy()) < 1e-10
    hist = hist.numpy()
    assert np.all(hist[:, 5:] < hist[:, :-5])  # CG residuals may wiggle, but fall over every 5 steps
    assert np.all(hist[:, -1] < 1e-2 * hist[:, 0])


def test_tolerance_stops_early_per_item():
    maps, ksp, mask = _sigpy_case(np.complex128, n=32, coils=4, accel=2)
    y = torch.from_numpy(np.stack([ksp, 1e-3 * ksp]))
    x, hist = cg_sense(y, torch.from_numpy(maps), mask, max_iter=200, tol=1e-4, return_history=True)
    assert hist.shape[-1] < 200  # stopped well before max_iter
    assert np.all(hist[:, -1].numpy() <= 1e-4)
    # Scale invariance: the relative tolerance treats both items alike.
    assert _rel(x[1].numpy() * 1e3, x[0].numpy()) < 1e-8


def test_x0_warm_start():
    maps, ksp, mask = _sigpy_case(np.complex128, n=32, coils=4, accel=2)
    y, s = torch.from_numpy(ksp), torch.from_numpy(maps)
    x_ref = cg_sense(y, s, mask, lam=0.05, max_iter=200, tol=1e-12)
    x_warm, hist = cg_sense(y, s, mask, lam=0.05, max_iter=5, tol=0, x0=x_ref, return_history=True)
    assert hist[0] < 1e-10  # started at the solution
    assert _rel(x_warm.numpy(), x_ref.numpy()) < 1e-10


# ------------------------------------------------------------------------------------------ maps
@pytest.mark.parametrize("method", ["espirit", "lowres"])
def test_estimate_maps_reconstruction_close_to_truth_maps(method):
    from scipy.ndimage import binary_erosion

    n, coils, accel, cf = 96, 8, 4, 0.125
    maps = _birdcage(coils, n, n)
    truth = _phantom(n, n)
    mask = make_mask(n, accel, center_fraction=cf, seed=3)
    ksp = torch.from_numpy(fft2c_np(maps * truth) * mask).to(C64)
    assert detect_acs(ksp) == center_lines(n, cf)
    est = estimate_maps(ksp, center_fraction=cf, method=method)
    assert est.shape == ksp.shape and est.dtype == C64
    x_true_maps = cg_sense(ksp, torch.from_numpy(maps).to(C64), mask, lam=1e-3, max_iter=30).abs().numpy()
    x_est_maps = cg_sense(ksp, est, mask, lam=1e-3, max_iter=30).abs().numpy()
    # Maps carry an arbitrary common phase: compare magnitudes, inside the object away from its
    # edge (ESPIRiT's crop zeroes the maps where the calibration sees no signal).
    inside = binary_erosion(np.abs(truth) > 0, iterations=3)
    err_est = _rel(x_est_maps[inside], np.abs(truth)[inside])
    err_true = _rel(x_true_maps[inside], np.abs(truth)[inside])
    assert err_est < 1.3 * err_true, (err_est, err_true)
    assert _rel(x_est_maps[inside], x_true_maps[inside]) < 0.06


def test_estimate_maps_batched_numpy_input_detects_acs():
    n, coils = 48, 4
    maps = _birdcage(coils, n, n)
    mask = make_mask(n, 2, center_fraction=0.25, seed=0)
    ksp = np.stack([fft2c_np(maps * _phantom(n, n)) * mask] * 2).astype(np.complex64)
    est = estimate_maps(ksp)  # ACS found from the data
    assert isinstance(est, torch.Tensor) and est.shape == ksp.shape and est.dtype == C64
    assert torch.allclose(est[0], est[1])
    # An ACS block off the centre by one column gives (nearly) the same maps: the roll that
    # centres it for EspiritCalib leaves no phase ramp behind.
    full = fft2c_np(maps * _phantom(n, n)).astype(np.complex64)
    acs = center_lines(n, 0.25)
    centred = estimate_maps(full, acs=acs)
    shifted = estimate_maps(full, acs=slice(acs.start - 1, acs.stop - 1))
    inside = (centred.abs() > 0) & (shifted.abs() > 0)
    assert inside.float().mean() > 0.3
    assert _rel(shifted[inside].numpy(), centred[inside].numpy()) < 0.05


@pytest.mark.parametrize("width", [24, 12, 8])
def test_scanner_maps_espirit_on_a_wide_enough_acs_else_lowres(width):
    """The rule a scanner can run on its own data: ESPIRiT (kernel 6) on an ACS block of 12 or more
    columns, the low-resolution maps on a narrower one, where ESPIRiT's maps come back empty. With
    either, CG-SENSE stays close to the image with the true maps."""
    from mrtl_core.sense import ESPIRIT_MIN_ACS, scanner_maps
    from scipy.ndimage import binary_erosion

    n, coils = 128, 8
    maps = _birdcage(coils, n, n)
    truth = _phantom(n, n)
    acs = center_lines(n, width / n)
    mask = make_mask(n, 4, center_fraction=width / n, seed=1)
    ksp = torch.from_numpy(fft2c_np(maps * truth) * mask).to(C64)
    got = scanner_maps(ksp, acs=acs)
    method = "espirit" if width >= ESPIRIT_MIN_ACS else "lowres"
    torch.testing.assert_close(got, estimate_maps(ksp, acs=acs, method=method), rtol=0, atol=0)
    inside = binary_erosion(np.abs(truth) > 0, iterations=3)
    x_true = cg_sense(ksp, torch.from_numpy(maps).to(C64), mask, lam=1e-3, max_iter=30).abs().numpy()
    x_scan = cg_sense(ksp, got, mask, lam=1e-3, max_iter=30).abs().numpy()
    assert _rel(x_scan[inside], x_true[inside]) < 0.15
    if width < ESPIRIT_MIN_ACS:   # why the rule falls back: ESPIRiT finds (almost) no maps here
        esp = estimate_maps(ksp, acs=acs, method="espirit")
        assert float((esp.abs().sum(0) > 0).float()[inside].mean()) < 0.5


# ------------------------------------------------------------------------------------------ errors
def _good():
    gen = torch.Generator().manual_seed(0)
    return _crandn(gen, 2, 8, 6, dtype=C64), _crandn(gen, 2, 8, 6, dtype=C64), np.ones(6, bool)


def test_bad_inputs_raise_with_the_argument_name():
    ksp, maps, mask = _good()
    with pytest.raises(ValueError, match="maps shape"):
        cg_sense(ksp, maps[:, :, :5], mask)
    with pytest.raises(TypeError, match="kspace must be complex"):
        cg_sense(ksp.real, maps, mask)
    with pytest.raises(TypeError, match="maps must be complex"):
        cg_sense(ksp, maps.abs(), mask)
    bad = ksp.clone()
    bad[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="kspace contains 1 non-finite"):
        cg_sense(bad, maps, mask)
    bad = maps.clone()
    bad[1, 0, 0] = complex(float("inf"), 0)
    with pytest.raises(ValueError, match="maps contains 1 non-finite"):
        cg_sense(ksp, bad, mask)
    with pytest.raises(ValueError, match="mask has 5 columns but .* W=6"):
        cg_sense(ksp, maps, np.ones(5, bool))
    with pytest.raises(ValueError, match="mask has 5 columns"):
        SenseOp(maps, np.ones(5, bool))
    with pytest.raises(ValueError, match="lam must be .* got -0.1"):
        cg_sense(ksp, maps, mask, lam=-0.1)
    with pytest.raises(ValueError, match="max_iter must be .* got 0"):
        cg_sense(ksp, maps, mask, max_iter=0)
    with pytest.raises(TypeError, match="maps .* must match kspace"):
        cg_sense(ksp, maps.to(C128), mask)
    with pytest.raises(ValueError, match="method must be"):
        estimate_maps(ksp, center_fraction=0.5, method="magic")
    with pytest.raises(ValueError, match="kernel_width"):
        estimate_maps(ksp, center_fraction=0.5)


# ------------------------------------------------------------------------------------------ CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_cuda_matches_cpu(dtype):
    maps, ksp, mask = _sigpy_case(dtype)
    cpu = cg_sense(torch.from_numpy(ksp), torch.from_numpy(maps), mask, lam=0.01, max_iter=30, tol=0)
    gpu, hist = cg_sense(
        torch.from_numpy(ksp).cuda(), torch.from_numpy(maps).cuda(), mask, lam=0.01, max_iter=30, tol=0,
        return_history=True,
    )
    assert gpu.is_cuda and hist.is_cuda
    assert _rel(gpu.cpu().numpy(), cpu.numpy()) < (1e-4 if dtype == np.complex64 else 1e-10)
