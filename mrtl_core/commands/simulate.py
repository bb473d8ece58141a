"""``python -m mrtl_core simulate``: write a synthetic domain as fastMRI-layout HDF5 files.

One file per subject, named ``{domain}_{patient_id}.h5``, readable by :class:`mrtl_core.data.SliceDataset`
and by fastMRI's own loaders. Example::

    python -m mrtl_core simulate --domain brain-3T --subjects 20 --slices 16 --size 256 --out data/brain-3T
    python -m mrtl_core simulate --list-domains
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domain", default="brain-1.5T", help="domain name (see --list-domains); default brain-1.5T")
    parser.add_argument("--subjects", type=int, default=10, help="number of subjects (files); default 10")
    parser.add_argument("--first-subject", type=int, default=0,
                        help="index of the first subject (subject i is the same whatever the count); default 0")
    parser.add_argument("--slices", type=int, default=16, help="slices per subject; default 16")
    parser.add_argument("--size", type=int, default=128, help="image matrix (size x size; k-space 2*size x size); default 128")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; default 0")
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


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..data import subject_filename, write_subject
    from ..simulate import DOMAINS, get_domain, simulate_subject

    if args.list_domains:
        for name, domain in DOMAINS.items():
            print(f"{name}\t{_describe(domain)}")
        return 0
    if args.out is None:
        print("error: --out DIR is required (or use --list-domains)", file=sys.stderr)
        return 2
    for name in ("subjects", "slices", "size"):
        if getattr(args, name) < 1:
            print(f"error: --{name} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    if args.first_subject < 0:
        print(f"error: --first-subject must be >= 0, got {args.first_subject}", file=sys.stderr)
        return 2
    try:
        get_domain(args.domain)
    except (KeyError, ValueError) as err:
        print(f"error: unknown domain {args.domain!r} ({err}); known: {', '.join(DOMAINS)}", file=sys.stderr)
        return 2

    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    indices = range(args.first_subject, args.first_subject + args.subjects)
    for i in tqdm(indices, desc=f"simulating {args.domain}", unit="subject", disable=args.quiet):
        subject = simulate_subject(args.domain, i, args.slices, args.size, args.seed)
        path = args.out / subject_filename(args.domain, subject.patient_id)
        write_subject(path, subject, with_sens_maps=not args.no_sens_maps)
        written += 1
    if not args.quiet:
        print(f"wrote {written} file(s) to {args.out}")
    return 0
