"""Every chapter notebook: stored clean (no outputs, one parameters cell) and runs with profile ``ci``.

The notebooks are executed once per session by the ``executed_notebooks`` fixture (conftest.py),
in sorted order; wall times are printed at the end of the run.
"""
from __future__ import annotations

import ast

import nbformat
import pytest

from conftest import NOTEBOOKS

pytestmark = pytest.mark.notebooks

PARAM_SOURCE = 'profile = os.environ.get("MRTL_PROFILE", "standard")'


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "kernelspec must be python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"cell {i} of {path.name} has stored outputs: strip them"
            assert cell.execution_count is None, f"cell {i} of {path.name} has an execution count"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters', found {len(tagged)}"
    source = tagged[0].source
    assert PARAM_SOURCE in source, f"the parameters cell of {path.name} must contain {PARAM_SOURCE!r}"
    # os must be imported in that cell or before it
    before = "\n".join(c.source for c in nb.cells[: nb.cells.index(tagged[0]) + 1] if c.cell_type == "code")
    assert any(isinstance(n, ast.Import) and any(a.name == "os" for a in n.names) for n in ast.walk(ast.parse(before))), \
        f"{path.name} must `import os` in or before its parameters cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_ci_profile(path, executed_notebooks):
    result = executed_notebooks[path.stem]
    print(f"{path.stem}: {result['seconds']:.1f} s")
    assert result["error"] is None, f"{path.name} failed under papermill (profile ci):\n{result['error']}"
    executed = nbformat.read(result["path"], as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{path.name} has error outputs: {[e.ename for e in errors]}"


def test_notebooks_write_records(executed_notebooks, executed_records):
    """Each chapter that ran records its numbers under its own name, with the ci profile."""
    for stem, info in executed_notebooks.items():
        if stem.startswith("_") or info["error"]:
            continue
        assert stem in executed_records, f"{stem} saved no record (mrtl_core.records.save_record({stem!r}, ...))"
        assert executed_records[stem]["profile"] == "ci"


def test_chapter1_numbers(executed_records):
    """Findings chapter 1 states in its text."""
    if "01_kspace" not in executed_records:
        pytest.skip("chapter 1 did not run")
    n = executed_records["01_kspace"]["numbers"]
    assert n["parseval_rel_error"] < 1e-5  # orthonormal FFT
    sweep = n["sweep"]
    nmse_random = [row["nmse_random"] for row in sweep]
    assert all(b > a for a, b in zip(nmse_random, nmse_random[1:])), "aliasing must grow with R"
    # equispaced masks alias coherently: a stronger PSF replica than random masks at every R >= 4
    assert all(row["sidelobe_equispaced"] > row["sidelobe_random"] for row in sweep if row["R"] >= 4)
    # variable density keeps more low-frequency energy at the same budget
    assert n["nmse_R4"]["random, variable density"] < n["nmse_R4"]["random"]
    # the budgeted equispaced mask: outer lines wider apart than R, so the replicas sit at W / spacing < W / R
    assert n["outer_line_spacing"] > n["R0"]
    assert abs(n["psf_replica_spacing"] - n["image_size"] / n["outer_line_spacing"]) <= 1.5
    assert n["psf_replica_spacing"] < n["image_size"] // n["R0"]
