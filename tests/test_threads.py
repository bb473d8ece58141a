"""mrtl_core.threads.choose_threads: the override, the load rule, and machines without a load average."""
from __future__ import annotations

import os

import pytest

from mrtl_core import threads
from mrtl_core.threads import choose_threads


def test_override_is_honoured():
    assert choose_threads(cpu_count=2, load=0.0, environ={"MRTL_THREADS": "1"}) == 1
    assert choose_threads(cpu_count=2, load=5.0, environ={"MRTL_THREADS": "3"}) == 3
    assert choose_threads(cpu_count=2, load=0.0, environ={"MRTL_THREADS": " 2 "}) == 2


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_bad_override_raises(bad):
    with pytest.raises(ValueError, match="MRTL_THREADS"):
        choose_threads(cpu_count=2, load=0.0, environ={"MRTL_THREADS": bad})


@pytest.mark.parametrize("cores, load, expected", [
    (2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 3.0, 1), (8, 2.2, 6), (1, 0.0, 1),
    (2, float("nan"), 2), (2, -1.0, 2),
])
def test_cores_left_free(cores, load, expected):
    assert choose_threads(cpu_count=cores, load=load, environ={}) == expected


def test_missing_loadavg_means_all_cores(monkeypatch):
    def no_loadavg():
        raise OSError("no load average")

    monkeypatch.setattr(os, "getloadavg", no_loadavg)
    assert choose_threads(cpu_count=2, environ={}) == 2
    monkeypatch.delattr(os, "getloadavg")
    assert choose_threads(cpu_count=4, environ={}) == 4


def test_default_reads_the_machine(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.delenv("MRTL_THREADS", raising=False)
    n = choose_threads()
    assert 1 <= n <= 2
    assert threads.choose_threads(load=1.0, environ={}) == 1


def test_auto_follows_the_load():
    assert choose_threads(cpu_count=2, load=0.0, environ={"MRTL_THREADS": "auto"}) == 2
    assert choose_threads(cpu_count=2, load=1.0, environ={"MRTL_THREADS": " AUTO "}) == 1


@pytest.mark.parametrize("value, expected", [("1", 1), ("2", 2), ("auto", None)])
def test_importing_mrtl_core_applies_the_policy_only_when_asked(value, expected):
    """A fresh interpreter: MRTL_THREADS set -> the count is applied on import; unset -> torch's default."""
    import subprocess
    import sys

    code = "import torch; d = torch.get_num_threads(); import mrtl_core; print(d, torch.get_num_threads())"
    env = {k: v for k, v in os.environ.items() if k != "MRTL_THREADS"}
    default, unchanged = map(int, subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                                 text=True, check=True).stdout.split())
    assert unchanged == default          # unset: nothing applied
    out = subprocess.run([sys.executable, "-c", code], env=dict(env, MRTL_THREADS=value), capture_output=True,
                         text=True, check=True).stdout.split()
    got = int(out[1])
    if expected is None:
        assert 1 <= got <= (os.cpu_count() or 1)
    else:
        assert got == expected


def test_lab_script_turns_the_policy_on():
    from conftest import ROOT

    text = (ROOT / "scripts" / "lab.sh").read_text()
    assert 'export MRTL_THREADS="${MRTL_THREADS:-auto}"' in text
