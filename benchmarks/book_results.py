"""Print the book's key numbers, as the chapters recorded them, as markdown tables.

Run after a book build (the chapters write ``notebooks/records/*.json``):

    .venv/bin/python benchmarks/book_results.py [--records notebooks/records]

Nothing here is typed by hand: the tables come from ``mrtl_core.report`` on the records.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="notebooks/records")
    args = parser.parse_args()
    os.environ["MRTL_RECORDS_DIR"] = str(Path(args.records).resolve())
    from mrtl_core import report
    from mrtl_core.grid import markdown_table
    from mrtl_core.records import load_records

    records = load_records()
    profiles = sorted({r["profile"] for r in records.values()})
    print(f"records of chapters {sorted(records)}; profile(s) {profiles}\n")
    for title, table in (
        ("Source domain (brain-1.5T, R = 4)", report.source_table),
        ("Generalization: pre-trained U-Net on each shift (foreground SSIM)", report.generalization_table),
        ("Fine-tuning (foreground SSIM)", report.finetune_table),
        ("Beyond the paper: strategies and forgetting", report.beyond_table),
        ("Data consistency after the U-Net", report.dc_table),
    ):
        print(f"### {title}\n")
        print(markdown_table(table(records), na="nan"))
        print()
    print("### The paper's claims\n")
    print(report.claims_markdown(report.claims(records)))


if __name__ == "__main__":
    main()
