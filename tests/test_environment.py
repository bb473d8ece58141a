"""The conda route (``environment.yml``) installs what the pip route (``pyproject.toml``) does.

One list of dependencies in two files: every dependency of ``pyproject.toml``, the ``book`` and
``dev`` extras included, appears in ``environment.yml`` with the same version bounds, nothing else
does (``python`` and ``pip`` aside), and the Python bound is ``requires-python``.
"""
from __future__ import annotations

import re

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from conftest import ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip vendors the same parser
    from pip._vendor import tomli as tomllib

EXTRAS = ("book", "dev")
CONDA_ONLY = {"python", "pip"}


def pyproject_requirements(path=ROOT / "pyproject.toml") -> tuple[dict[str, SpecifierSet], SpecifierSet]:
    """``{name: specifier}`` over the dependencies and the extras, and ``requires-python``."""
    project = tomllib.loads(path.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    missing = [e for e in EXTRAS if e not in extras]
    assert not missing, f"pyproject.toml lacks the extras {missing}"
    lines = list(project["dependencies"]) + [line for e in EXTRAS for line in extras[e]]
    return _by_name(lines, "pyproject.toml"), SpecifierSet(project["requires-python"])


def environment_requirements(path=ROOT / "environment.yml") -> tuple[dict[str, SpecifierSet], SpecifierSet]:
    """``{name: specifier}`` over environment.yml's conda and pip packages, and its Python bound."""
    env = yaml.safe_load(path.read_text())
    conda, pip, python = [], [], None
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"environment.yml: unexpected mapping {dep}"
            pip += [line for line in dep["pip"] if not line.strip().startswith("-")]  # pip options
            continue
        name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$", dep).groups()
        if name == "python":
            python = SpecifierSet(spec)
        elif name not in CONDA_ONLY:
            conda.append(f"{name}{spec}")
    assert python is not None, "environment.yml names no python"
    return _by_name(conda + pip, "environment.yml"), python


def _by_name(lines: list[str], where: str) -> dict[str, SpecifierSet]:
    out: dict[str, SpecifierSet] = {}
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name not in out, f"{where}: {req.name} listed twice"
        out[name] = req.specifier
    return out


def differences(pyproject: dict[str, SpecifierSet], environment: dict[str, SpecifierSet]) -> list[str]:
    """What keeps the two lists from being one, in words (empty when they agree)."""
    problems = [f"{n}{pyproject[n]} is in pyproject.toml but not in environment.yml"
                for n in sorted(set(pyproject) - set(environment))]
    problems += [f"{n}{environment[n]} is in environment.yml but not in pyproject.toml"
                 for n in sorted(set(environment) - set(pyproject))]
    problems += [f"{n}: pyproject.toml says '{pyproject[n]}', environment.yml '{environment[n]}'"
                 for n in sorted(set(pyproject) & set(environment)) if pyproject[n] != environment[n]]
    return problems


def test_environment_yml_has_every_pyproject_dependency_and_no_other():
    pyproject, _ = pyproject_requirements()
    environment, _ = environment_requirements()
    assert len(pyproject) >= 15, f"suspiciously few dependencies parsed from pyproject.toml: {sorted(pyproject)}"
    problems = differences(pyproject, environment)
    assert not problems, "environment.yml and pyproject.toml disagree:\n" + "\n".join(problems)


def test_environment_yml_python_is_requires_python():
    _, requires = pyproject_requirements()
    _, python = environment_requirements()
    assert python == requires, f"environment.yml python{python} but pyproject requires-python {requires}"


def test_environment_yml_installs_cpu_torch():
    """The conda route, like the pip route, must not pull a CUDA torch onto a laptop by default."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any(line.startswith("--extra-index-url") and line.rstrip("/").endswith("/whl/cpu") for line in pip)


@pytest.mark.parametrize("mutate, expected", [
    (lambda p, e: e.pop("torch"), "torch>=2.2 is in pyproject.toml but not in environment.yml"),
    (lambda p, e: e.__setitem__("requests", SpecifierSet()), "requests is in environment.yml but not in pyproject.toml"),
    (lambda p, e: e.__setitem__("numpy", SpecifierSet(">=2")), "numpy: pyproject.toml says '>=1.24'"),
])
def test_differences_names_each_mismatch(mutate, expected):
    """The comparison can fail: a dropped, an extra and a re-bounded package are each reported."""
    pyproject, _ = pyproject_requirements()
    environment = dict(pyproject)
    mutate(pyproject, environment)
    problems = differences(pyproject, environment)
    assert any(p.startswith(expected) for p in problems), problems
