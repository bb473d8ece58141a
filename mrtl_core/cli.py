"""``python -m mrtl_core {simulate,train,finetune,evaluate}``: the library's runs outside notebooks.

Each sub-command lives in ``mrtl_core/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; imports are lazy so ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "simulate": "write a synthetic domain as fastMRI-layout HDF5 files",
    "train": "train a U-Net from scratch (pre-training, or a from-scratch baseline)",
    "finetune": "fine-tune a checkpoint on target data (end-to-end, frozen encoder, last layers)",
    "evaluate": "evaluate checkpoints, zero-filled and CG-SENSE on test subjects",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mrtl_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"mrtl_core.commands.{name}")
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"mrtl_core.commands.{args.command}")
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
