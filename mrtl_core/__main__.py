"""``python -m mrtl_core``: the command line of :mod:`mrtl_core.cli` (simulate, train, finetune, evaluate)."""
import sys

from .cli import main

sys.exit(main())
