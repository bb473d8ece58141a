"""The package's shape: every module in a layer, imports only downwards, public names across modules.

The layers are the README's map of ``mrtl_core`` read bottom-up: the model library (FFTs, masks,
metrics, the U-Net, statistics, files), the physics and the data on top of it, training, evaluation,
the experiment, the pages' composition, and the command line. A module may import only modules of
lower layers, so none can reach one above it; a name with a leading underscore is the module's own
and is used by no other module, test, benchmark or chapter.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mrtl_core"

LAYERS = [
    {"fft", "masks", "metrics", "unet", "cache", "stats", "profiles", "phantoms", "phantoms.brain", "threads",
     "phantoms.knee", "sphinx_eval", "widgets", "progress", "precision", "epg", "stop", "augment"},
    {"sense", "simulate", "records", "data", "gallery"},
    {"domains", "train"},
    {"evaluate"},
    {"experiment"},
    {"grid", "report", "course"},
    {"cli"},
    {"commands", "commands.train"},   # commands.train holds what the other commands share
    {"commands.finetune", "commands.evaluate", "commands.simulate"},
    {"__main__"},
]
LAYER = {module: i for i, layer in enumerate(LAYERS) for module in layer}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _package_imports(path: Path) -> set[str]:
    """The ``mrtl_core`` modules that ``path`` imports (relative or absolute, at any depth of the file)."""
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
            elif node.module and node.module.split(".")[0] == "mrtl_core":
                base = []
            else:
                continue
            module = (node.module or "").split(".")
            module = module[1:] if not node.level and module[0] == "mrtl_core" else [m for m in module if m]
            target = ".".join(base + module)
            for alias in node.names:   # `from . import data` names a module, `from .data import x` a symbol
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in LAYER else target)
        elif isinstance(node, ast.Import):
            found |= {a.name[len("mrtl_core."):] for a in node.names if a.name.startswith("mrtl_core.")}
    return {m for m in found if m}


def test_every_module_has_a_layer():
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")} - {""}
    assert modules - set(LAYER) == set(), "modules without a layer: add them to LAYERS"
    assert set(LAYER) - modules == set(), "LAYERS names modules that do not exist"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: _module_name(p) or "__init__")
def test_imports_go_only_downwards(path):
    name = _module_name(path)
    if not name:
        return
    upward = {m: LAYER.get(m) for m in _package_imports(path) if m != name and LAYER.get(m, 99) >= LAYER[name]}
    assert not upward, f"{name} (layer {LAYER[name]}) imports modules of its own or a higher layer: {upward}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: _module_name(p) or "__init__")
def test_every_module_says_its_job(path):
    doc = ast.get_docstring(ast.parse(path.read_text()))
    if path.name == "__init__.py" and not path.read_text().strip():
        return
    assert doc and len(doc.split()) >= 5, f"{path.relative_to(ROOT)} has no docstring saying what it is for"


# --- private names ------------------------------------------------------------------------------
PRIVATE_ATTRIBUTE = re.compile(r"\b(?:mrtl_core\.)?([a-z_]+)\._([a-z][a-z0-9_]*)\b")


def _package_aliases(tree: ast.AST) -> dict[str, str]:
    """Local names bound to ``mrtl_core`` modules: ``from mrtl_core import data as d`` -> {"d": "data"}."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("mrtl_core")):
            prefix = (node.module or "").removeprefix("mrtl_core").lstrip(".")
            for a in node.names:
                module = f"{prefix}.{a.name}" if prefix else a.name
                if module in LAYER:
                    aliases[a.asname or a.name] = module
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("mrtl_core.") and a.asname:
                    aliases[a.asname] = a.name[len("mrtl_core."):]
    return aliases


def _private_uses(source: str, where: str, own_module: str | None = None) -> list[str]:
    tree = ast.parse(source, where)
    aliases = _package_aliases(tree)
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("mrtl_core")):
            uses += [f"{where}: from {node.module} import {a.name}" for a in node.names
                     if a.name.startswith("_") and not a.name.startswith("__")]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "setattr" and len(node.args) >= 2
              and isinstance(node.args[0], ast.Name) and node.args[0].id in aliases
              and isinstance(node.args[1], ast.Constant) and str(node.args[1].value).startswith("_")):
            uses.append(f"{where}:{node.lineno}: monkeypatch of {node.args[0].id}.{node.args[1].value}")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
              and node.attr.startswith("_") and not node.attr.startswith("__")
              and aliases[node.value.id] != own_module):
            uses.append(f"{where}:{node.lineno}: {node.value.id}.{node.attr}")
    return uses


def _code_files():
    for folder in ("mrtl_core", "tests", "benchmarks", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            own = _module_name(path) if folder == "mrtl_core" else None
            yield path.relative_to(ROOT), path.read_text(), own


def _notebook_cells():
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            yield nb.relative_to(ROOT), i, cell["cell_type"], "".join(cell["source"])


def test_no_private_name_is_used_outside_its_module():
    uses = []
    for where, source, own in _code_files():
        uses += _private_uses(source, str(where), own)
    for where, i, kind, source in _notebook_cells():
        if kind == "code":
            code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
            uses += _private_uses(code, f"{where} cell {i}")
        else:   # the text may not send readers to a private name either
            uses += [f"{where} cell {i}: {m.group(0)}" for m in PRIVATE_ATTRIBUTE.finditer(source)
                     if m.group(1) in {n.split(".")[-1] for n in LAYER}]
    assert not uses, "private names used outside their module:\n" + "\n".join(uses)


def test_the_private_name_check_can_fail():
    source = ("from mrtl_core import train\nfrom mrtl_core.data import _hidden\ntrain._forward_batch(1)\n"
              "monkeypatch.setattr(train, '_loop', None)\n")
    assert len(_private_uses(source, "example")) == 3
    assert _package_imports(PACKAGE / "experiment.py") >= {"train", "data"}
