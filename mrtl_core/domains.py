"""The cache of synthetic domains: simulated subjects written once as fastMRI files, keyed by the physics.

:func:`domain_files` returns subjects ``0 .. n-1`` of a domain of :mod:`mrtl_core.simulate`, generated
once under :func:`mrtl_core.cache.cached_dir` and reused afterwards (subjects of a smaller or larger
request with the same settings are copied, not simulated again). The cache key holds the data
layout's version (:data:`mrtl_core.data.DATA_VERSION`) and :func:`physics_version`, a hash of the
simulator's source and the domain's phantom, so a change to the physics or that anatomy rebuilds its
data instead of serving stale files.
"""
from __future__ import annotations

import functools
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import cache, data

__all__ = ["simulator", "physics_version", "physics_sources", "subject_filename", "domain_files"]


def simulator():
    """The simulator that builds cached domains (a hook: tests stand in a cheap one)."""
    from .simulate import simulate_subject

    return simulate_subject


def physics_version(domain: str | None = None) -> Any:
    """What identifies the simulator's physics (and, for ``domain``, its anatomy) in cache keys.

    ``simulate.PHYSICS_VERSION`` if the module declares one; otherwise a hash of the source that
    makes the data (hashed once per process): ``simulate.py``, ``phantoms/__init__.py`` and the
    domain's own phantom (``phantoms/brain.py`` for a brain domain), so that a change to the physics
    or that anatomy rebuilds its cached domains instead of serving stale data, while a change to the
    knee leaves the brain's data, and every model trained on it, where they are. With no ``domain``
    (or one the registry does not know) every phantom counts.
    """
    from . import simulate

    declared = getattr(simulate, "PHYSICS_VERSION", None)
    if declared is not None:
        return declared
    anatomy = None
    if domain is not None:
        try:
            anatomy = simulate.get_domain(domain).anatomy
        except (KeyError, ValueError):
            anatomy = None
    return _source_hash(str(Path(simulate.__file__).resolve().parent), anatomy)


def physics_sources(package: Path, anatomy: str | None = None) -> list[Path]:
    """The files whose bytes make :func:`physics_version`: ``simulate.py``, ``epg.py`` (the echo
    trains it imports) and the phantoms of ``anatomy`` (``phantoms/__init__.py`` and
    ``phantoms/<anatomy>.py``; every phantom for ``None``)."""
    phantoms = sorted((package / "phantoms").glob("*.py"))
    if anatomy is not None and (package / "phantoms" / f"{anatomy}.py").is_file():
        phantoms = [p for p in phantoms if p.name in ("__init__.py", f"{anatomy}.py")]
    return [package / "simulate.py", package / "epg.py", *phantoms]


@functools.lru_cache(maxsize=None)
def _source_hash(package: str, anatomy: str | None = None) -> str:
    """The hash of :func:`physics_sources`, read once per process: every cache key holds it, and the
    files do not change under a running process."""
    digest = hashlib.sha256()
    for src in physics_sources(Path(package), anatomy):
        if src.is_file():
            digest.update(src.name.encode() + b"\0" + src.read_bytes())
    return "src-" + digest.hexdigest()[:12]


def subject_filename(domain: str, patient_id: str) -> str:
    """The file name of one subject: ``{domain}_{patient_id}.h5``."""
    return f"{domain}_{patient_id}.h5"


def domain_files(
    domain: str,
    num_subjects: int,
    num_slices: int,
    size: int,
    seed: int = 0,
    progress: bool = True,
    with_sens_maps: bool = True,
) -> list[Path]:
    """Subjects ``0 .. num_subjects-1`` of a synthetic domain as fastMRI files, generated once and cached.

    Subject ``i`` depends only on ``(domain, i, num_slices, size, seed)``, so the first ``n`` files of
    a larger request are the files of a smaller one: take train/val/test from one call. The cache entry
    is keyed by the whole configuration (and :data:`mrtl_core.data.DATA_VERSION`), built under a lock (two processes
    asking at once build it once) and appears atomically; files already generated for another subject
    count with the same settings are reused (copied, after their checksums are verified) rather than
    simulated again. A damaged entry (a file missing, cut, or changed since it was written) is reported
    with its path and rebuilt.

    Returns:
        the ``num_subjects`` paths, in subject order.
    """
    from .progress import tqdm

    for name, v in (("num_subjects", num_subjects), ("num_slices", num_slices), ("size", size)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    base = {"domain": str(domain), "num_slices": int(num_slices), "size": int(size), "seed": int(seed),
            "with_sens_maps": bool(with_sens_maps), "data_version": data.DATA_VERSION, "physics": physics_version(str(domain))}
    config = {**base, "num_subjects": int(num_subjects)}

    def build(tmp: Path) -> None:
        simulate_subject = simulator()
        donors = _donor_files(str(domain), base, num_subjects)
        order: dict[str, int] = {}
        for i in tqdm(range(num_subjects), desc=f"simulating {domain}", unit="subject", disable=not progress):
            donor = donors.get(i)
            if donor is not None:
                try:
                    # a copy (or reflink), never a hard link: damage to one entry must not reach another
                    cache.copy_file(donor, tmp / donor.name)
                    order[donor.name] = i
                    continue
                except OSError:
                    pass  # e.g. the donor vanished: simulate it again
            subject = simulate_subject(domain, i, num_slices, size, seed)
            name = subject_filename(str(domain), subject.patient_id)
            data.write_subject(tmp / name, subject, with_sens_maps=with_sens_maps)
            order[name] = i
        (tmp / "order.json").write_text(json.dumps(order, indent=1))

    entry = cache.cached_dir("datasets", str(domain), config, build, validate=_check_domain_entry(num_subjects))
    return _ordered_files(entry)


def _ordered_files(entry: Path) -> list[Path]:
    """The files of a domain cache entry in subject order (``order.json``)."""
    order = json.loads((entry / "order.json").read_text())
    if not isinstance(order, dict):
        raise data.DataError(f"{entry / 'order.json'}: expected a mapping of file name to subject index, got {order!r}")
    return [entry / name for name, _ in sorted(order.items(), key=lambda item: item[1])]


def _check_domain_entry(num_subjects: int):
    """The ``validate`` of a domain cache entry: a readable ``order.json`` naming every file."""
    def validate(entry: Path) -> None:
        try:
            paths = _ordered_files(entry)
        except (OSError, ValueError) as err:
            raise data.DataError(f"{entry / 'order.json'}: unreadable ({err})") from None
        missing = [p.name for p in paths if not p.is_file()]
        if missing or len(paths) != num_subjects:
            raise data.DataError(f"{entry}: holds {len(paths) - len(missing)} of {num_subjects} subject files "
                            f"(missing {missing[:3]})")
    return validate


def _donor_files(domain: str, base: Mapping[str, Any], num_subjects: int) -> dict[int, Path]:
    """Files of subject index i < ``num_subjects`` from complete cache entries with the same settings
    but another count.

    Only files whose bytes match the checksums recorded when their entry was written qualify: a
    damaged file is reported and simulated afresh instead of being copied into a new entry.
    """
    found: dict[int, Path] = {}
    parent = cache.cache_root() / "datasets"
    if not parent.is_dir():
        return found
    for cfg_path in parent.glob(f"{cache.glob_escape(domain)}-*/config.json"):
        entry = cfg_path.parent
        try:
            cfg = json.loads(cfg_path.read_text())
            order = json.loads((entry / "order.json").read_text())
            sums = json.loads((entry / cache.MANIFEST).read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no checksums (an older entry) or unreadable: nothing to vouch for its files
        if not all(cfg.get(k) == v for k, v in base.items()):
            continue
        for name, i in order.items():
            if int(i) in found or int(i) >= num_subjects or name not in sums:
                continue
            path = entry / name
            try:
                intact = cache.file_sha256(path) == sums[name].get("sha256")
            except OSError:
                intact = False
            if intact:
                found[int(i)] = path
            else:
                warnings.warn(f"damaged cache file {path}: its sha256 differs from when it was written; "
                              f"simulating subject {i} again", stacklevel=3)
    return found
