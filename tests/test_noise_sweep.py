"""``benchmarks/noise_sweep.py``: its scanners differ from the source in the noise alone."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import noise_sweep  # noqa: E402

from mrtl_core import simulate  # noqa: E402


@pytest.mark.parametrize("factor", noise_sweep.NOISE_FACTORS)
def test_only_the_noise_changes_by_its_factor(factor):
    base, dom = simulate.get_domain("brain-1.5T"), noise_sweep.noise_domain(factor)
    assert dom.noise_std == pytest.approx(factor * base.noise_std, rel=1e-12)
    a = simulate.simulate_subject(base, 20_000, 2, 32, seed=0)
    b = simulate.simulate_subject(dom, 20_000, 2, 32, seed=0)
    np.testing.assert_array_equal(a.image, b.image)            # the same subject, signal and coils
    np.testing.assert_array_equal(a.sens_maps, b.sens_maps)
    # the k-space differs by the noise only: b - a is (factor - 1) times a's noise (the same stream),
    # complex white noise of standard deviation |factor - 1| * noise_std
    diff = (b.kspace.astype(np.complex128) - a.kspace).ravel()
    assert np.sqrt(np.mean(np.abs(diff) ** 2)) == pytest.approx(abs(factor - 1) * base.noise_std, rel=0.02, abs=1e-9)
