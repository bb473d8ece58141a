"""``python -m mrtl_core {simulate,train,finetune,evaluate}``: the library's runs outside notebooks.

Each sub-command lives in ``mrtl_core/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; imports are lazy so ``--help`` stays fast.

The CLI speaks to people, not to developers: a bad input (a malformed file, a setting out of
range, a path that cannot be used) ends the command with one line on stderr,
``error: <what is at fault>: <what is wrong>``, and exit status 2; ``--debug`` (anywhere on the
command line, or ``MRTL_DEBUG=1``) shows the traceback instead. Ctrl-C ends with status 130 and
SIGTERM with 143, after the command has said what was saved and how to resume.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from typing import NoReturn

from . import stop

COMMANDS = {
    "simulate": "write a synthetic domain as fastMRI-layout HDF5 files",
    "train": "train a U-Net from scratch (pre-training, or a from-scratch baseline)",
    "finetune": "fine-tune a checkpoint on target data (end-to-end, frozen encoder, last layers)",
    "evaluate": "evaluate checkpoints, zero-filled and CG-SENSE on test subjects",
}

#: exit statuses: bad input (as argparse), Ctrl-C and SIGTERM (128 + signal number, as shells report)
EXIT_BAD_INPUT = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class CLIError(Exception):
    """A bad input found by a command itself; its message is the one line the user sees."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that ``finally`` blocks and atomic writes clean up."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: argument --x: ...; see --help``."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m mrtl_core", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}",
                                parser_class=_Parser)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"mrtl_core.commands.{name}")
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def one_line(err: BaseException) -> str:
    """The error as one line: its message with newlines folded, or its type when it has none."""
    raw = str(err)
    if "Original Traceback" in raw:
        # re-raised from a DataLoader worker: the message carries the worker's traceback; its last
        # line is "module.ErrorType: message"
        last = raw.strip().splitlines()[-1]
        raw = last.split(": ", 1)[1] if ": " in last and " " not in last.split(": ", 1)[0] else last
    text = " ".join(raw.split()) if raw.strip() else type(err).__name__
    if isinstance(err, KeyError) and text.startswith("'"):
        text = f"missing key {text}"
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    return text


def handle_sigterm(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    stop.request(Terminated)   # kept for the loops' check, should this raise land in an ignoring frame
    raise Terminated()


def handle_sigint(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    stop.request(KeyboardInterrupt)
    raise KeyboardInterrupt()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere, so it can be added to any command that failed
    debug = "--debug" in argv or os.environ.get("MRTL_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    args.argv = argv  # commands quote it back in their resume hints
    module = importlib.import_module(f"mrtl_core.commands.{args.command}")
    previous = {}
    if _main_thread():
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, handle_sigterm)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:   # not when SIGINT is ignored
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, handle_sigint)
    stop.clear()
    try:
        with stop.quiet_swallowed_stops():
            return int(module.run(args) or 0)
    except KeyboardInterrupt as err:
        if debug:
            raise
        if not getattr(err, "reported", False):
            print(f"interrupted: {args.command} stopped before it finished", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(err, Terminated) else EXIT_SIGINT
    except CLIError as err:
        if debug:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, TypeError, KeyError, OSError, RuntimeError) as err:
        # DataError is a ValueError; the library's messages name the file, key, shape or value
        if debug:
            raise
        print(f"error: {one_line(err)} (run again with --debug for the traceback)", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        stop.clear()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
