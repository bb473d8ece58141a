"""Randomised pre-training data (``brain-mixed-1.5T``) and the held-out contrast (``brain-flair-1.5T``)."""
from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest

from mrtl_core import data, simulate as sim

MIXED = sim.get_domain("brain-mixed-1.5T")
R = MIXED.randomisation


def test_each_subject_draws_its_scanner_within_the_ranges():
    seen = collections.Counter()
    for i in range(40):
        scanner = R.draw(MIXED, np.random.default_rng(sim.subject_seed_sequence(MIXED.name, i, 0).spawn(5)[4]))
        assert scanner.protocol in R.protocols and scanner.num_coils in R.coil_counts
        assert R.snr_range[0] <= scanner.snr_1p5T <= R.snr_range[1]
        assert R.receive_bias_range[0] <= scanner.receive_bias <= R.receive_bias_range[1]
        assert scanner.name == MIXED.name and scanner.randomisation is None
        assert scanner.coil_rings == (1 if scanner.num_coils <= 8 else 2)
        seen[scanner.protocol.acquisition] += 1
        seen[scanner.num_coils] += 1
    assert set(seen) == {"AXT1", "AXPD", "AXT2", 8, 16}          # every choice occurs in 40 subjects
    assert "AXFLAIR" not in {p.acquisition for p in R.protocols}   # the held-out contrast is never drawn


def test_a_subject_is_its_drawn_scanner_simulated(tmp_path):
    subject = sim.simulate_subject(MIXED, 7, 2, 32, seed=0)
    scanner = R.draw(MIXED, np.random.default_rng(sim.subject_seed_sequence(MIXED.name, 7, 0).spawn(5)[4]))
    fixed = sim.simulate_subject(scanner, 7, 2, 32, seed=0)     # the same name: the same subject streams
    np.testing.assert_array_equal(subject.kspace, fixed.kspace)
    assert subject.kspace.shape[1] == scanner.num_coils
    assert subject.noise_std == pytest.approx(scanner.noise_std)
    ref = sim.tissue_signal("white_matter", scanner.protocol, 1.5)
    assert subject.noise_std == pytest.approx(ref / scanner.snr_1p5T)   # SNR of white matter, as drawn
    path = data.write_subject(tmp_path / "s.h5", subject)
    import h5py

    with h5py.File(path) as f:
        assert f.attrs["acquisition"] == scanner.protocol.acquisition
    again = sim.simulate_subject(MIXED, 7, 2, 32, seed=0)
    np.testing.assert_array_equal(subject.kspace, again.kspace)   # deterministic in (domain, subject, seed)


def test_flair_nulls_csf_where_the_inversion_recovery_equation_says():
    """An independent check of the IR signal: zero at TI = T1 ln(2 / (1 + exp(-TR / T1)))."""
    p = sim.BRAIN_FLAIR_PROTOCOL
    t1 = sim.TISSUES["csf"].t1[0]
    null = t1 * np.log(2.0 / (1.0 + np.exp(-p.TR / t1)))
    at_null = dataclasses.replace(p, TI=float(null))
    assert float(at_null.signal(1.0, t1, 1900.0)) == pytest.approx(0.0, abs=1e-12)
    # the book's FLAIR (TI 2500 ms) leaves CSF the darkest brain tissue, grey above white matter
    s = {t: sim.tissue_signal(t, p, 1.5) for t in ("csf", "white_matter", "grey_matter")}
    assert s["csf"] < s["white_matter"] < s["grey_matter"]


def test_t1_and_pd_contrasts_order_the_tissues_as_clinical_images_do():
    t1 = {t: sim.tissue_signal(t, sim.BRAIN_T1_PROTOCOL, 1.5) for t in ("csf", "fat", "white_matter")}
    assert t1["csf"] < t1["white_matter"] < t1["fat"]          # T1: CSF dark, fat bright
    t2 = {t: sim.tissue_signal(t, sim.BRAIN_PROTOCOL, 1.5) for t in ("csf", "white_matter")}
    assert t2["csf"] > t2["white_matter"]                      # T2: CSF bright


def test_randomisation_rejects_bad_ranges():
    with pytest.raises(ValueError, match="at least one protocol"):
        sim.Randomisation(())
    with pytest.raises(ValueError, match="snr_range"):
        sim.Randomisation((sim.BRAIN_PROTOCOL,), snr_range=(30.0, 10.0))
    with pytest.raises(ValueError, match="receive_bias_range"):
        sim.Randomisation((sim.BRAIN_PROTOCOL,), receive_bias_range=(0.2, 1.5))


def test_the_benchmark_refuses_a_zero_epoch_budget_and_names_its_record_by_epochs(tmp_path, capsys):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import randomised_pretraining as rp

    with pytest.raises(SystemExit):
        rp.main(["--profile", "ci", "--epochs", "0"])
    assert "--epochs must be >= 1" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="randomised-pretraining-ci-epochs7.json"):
        rp.main(["--profile", "ci", "--epochs", "7", "--report"])   # the report of a run that is not there
    with pytest.raises(SystemExit):
        rp.main(["--profile", "ci", "--chans", "0"])
    assert "--chans must be >= 1" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="randomised-pretraining-ci-epochs7-chans12.json"):
        rp.main(["--profile", "ci", "--epochs", "7", "--chans", "12", "--report"])
