"""Compare two folders of chapter records number by number: did a change move any recorded number?

    python benchmarks/compare_records.py BEFORE_DIR AFTER_DIR [--legacy-chapter4]

Each folder holds the ``<chapter>.json`` files a book run writes (``$MRTL_RECORDS_DIR``, or
``notebooks/records``). Timings (any path with ``seconds``, ``cached``, ``elapsed``) are skipped;
every other number, string and list entry must be equal. ``--legacy-chapter4`` maps chapter 4's
flat keys of records written before the records got fields (``diff_ssim_fg_unet_minus_zf_R4``,
``ssim_cg_R4_ci``) to today's nesting (``differences/U-Net/zero-filled/ssim_fg``,
``scores/CG-SENSE/ssim/ci``). Exit status 1 if anything differs.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

TIMING = re.compile(r"seconds|cached|elapsed|explorer_frames")
METHODS = {"zf": "zero-filled", "cg": "CG-SENSE", "unet": "U-Net"}


def flatten(value, prefix: str = "") -> dict[str, object]:
    """``{"a/b/0": x}`` for every leaf of nested dicts and lists."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {prefix: value}
    out: dict[str, object] = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}/{key}" if prefix else str(key)))
    return out


def legacy_chapter4(path: str) -> str:
    m = re.fullmatch(r"diff_(\w+?)_(zf|cg|unet)_minus_(zf|cg|unet)_R4/(\d)", path)
    if m:
        return f"differences/{METHODS[m[2]]}/{METHODS[m[3]]}/{m[1]}/{m[4]}"
    m = re.fullmatch(r"(\w+?)_(zf|cg|unet)_R4_ci/(\d)", path)
    if m:
        return f"scores/{METHODS[m[2]]}/{m[1]}/ci/{m[3]}"
    m = re.fullmatch(r"(\w+?)_(zf|cg|unet)_R4", path)
    return f"scores/{METHODS[m[2]]}/{m[1]}/mean" if m else path


def equal(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--legacy-chapter4", action="store_true", help="map chapter 4's old flat keys first")
    parser.add_argument("--show", type=int, default=25, help="differences listed per chapter")
    args = parser.parse_args(argv)
    changed = False
    for path in sorted(args.before.glob("*.json")):
        other = args.after / path.name
        if not other.is_file():
            print(f"{path.stem}: missing in {args.after}")
            changed = True
            continue
        a = flatten(json.loads(path.read_text())["numbers"])
        b = flatten(json.loads(other.read_text())["numbers"])
        if args.legacy_chapter4 and path.stem.startswith("04"):
            a = {legacy_chapter4(k): v for k, v in a.items()}
        keys = [k for k in sorted(set(a) | set(b)) if not TIMING.search(k)]
        diffs = [f"    {k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in keys
                 if not equal(a.get(k, "<absent>"), b.get(k, "<absent>"))]
        print(f"{path.stem}: {len(keys) - len(diffs)} equal, {len(diffs)} different")
        if diffs:
            print("\n".join(diffs[: args.show]))
        changed |= bool(diffs)
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
