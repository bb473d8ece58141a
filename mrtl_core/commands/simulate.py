"""``python -m mrtl_core simulate``: write a synthetic domain as fastMRI-layout HDF5 files.

One file per subject, named ``{domain}_{patient_id}.h5``, readable by :class:`mrtl_core.data.SliceDataset`
and by fastMRI's own loaders. Example::

    python -m mrtl_core simulate --domain brain-3T --subjects 20 --slices 16 --size 256 --out data/brain-3T
    python -m mrtl_core simulate --list-domains
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..cache import blocking_file
from ..cli import CLIError
from .train import nonnegative_int, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domain", default="brain-1.5T", help="domain name (see --list-domains); default brain-1.5T")
    parser.add_argument("--subjects", type=positive_int, default=10, help="number of subjects (files); default 10")
    parser.add_argument("--first-subject", type=nonnegative_int, default=0,
                        help="index of the first subject (subject i is the same whatever the count); default 0")
    parser.add_argument("--slices", type=positive_int, default=16, help="slices per subject; default 16")
    parser.add_argument("--size", type=positive_int, default=128,
                        help="image matrix, even and >= 8 (size x size; k-space 2*size x size); default 128")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="dataset seed; default 0")
    parser.add_argument("--out", type=Path, help="output directory (created if needed)")
    parser.add_argument("--no-sens-maps", action="store_true", help="omit the true coil maps (as real fastMRI files)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--list-domains", action="store_true", help="print the known domains and exit")


def _describe(domain) -> str:
    fields = []
    for name in ("anatomy", "field_strength_T", "num_coils", "description"):
        value = getattr(domain, name, None)
        if value is not None:
            fields.append(f"{name}={value}")
    return ", ".join(fields)


def _check_out(out: Path) -> None:
    """``--out`` is, or can become, a directory."""
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: is a file, expected a directory")
    blocker = blocking_file(out)
    if blocker is not None:
        raise CLIError(f"--out {out}: {blocker} is a file, not a directory")


def run(args: argparse.Namespace) -> int:
    from ..progress import tqdm

    from ..data import write_subject
    from ..domains import subject_filename
    from ..simulate import DOMAINS, get_domain, simulate_subject

    if args.list_domains:
        for name, domain in DOMAINS.items():
            print(f"{name}\t{_describe(domain)}")
        return 0
    if args.out is None:
        raise CLIError("--out DIR is required (or use --list-domains)")
    if args.size < 8 or args.size % 2:
        raise CLIError(f"--size {args.size}: must be even and >= 8 (a 2x oversampled readout, centred FFT)")
    try:
        get_domain(args.domain)
    except (KeyError, ValueError):
        raise CLIError(f"--domain {args.domain!r}: unknown; known: {', '.join(DOMAINS)}") from None
    _check_out(args.out)

    created = not args.out.exists()
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    indices = range(args.first_subject, args.first_subject + args.subjects)
    try:
        for i in tqdm(indices, desc=f"simulating {args.domain}", unit="subject", disable=args.quiet):
            subject = simulate_subject(args.domain, i, args.slices, args.size, args.seed)
            path = args.out / subject_filename(args.domain, subject.patient_id)
            write_subject(path, subject, with_sens_maps=not args.no_sens_maps)
            written += 1
    finally:
        if created and written == 0 and args.out.is_dir() and not any(args.out.iterdir()):
            args.out.rmdir()  # a run that wrote nothing leaves no empty folder behind
    if not args.quiet:
        print(f"wrote {written} file(s) to {args.out}")
    return 0
