"""Run inside every chapter's kernel by the test suite (an IPython startup file): after each cell,
every figure that has a legend must name every labelled series any of its panels draws.

A series drawn in one panel but missing from the figure's only legend (chapter 6's full-set line)
is reported as a ``LegendWarning`` in the cell's output, which ``tests/test_book_clean.py`` finds in
the built pages. Series a plot labels ``_...`` (matplotlib's "no legend" convention) are exempt.
"""
from __future__ import annotations

import warnings


class LegendWarning(UserWarning):
    """A figure's legend leaves out a series the figure draws."""


def missing_from_legends(fig) -> list[str]:
    """The labels of series drawn in ``fig`` that none of its legends names (empty without legends)."""
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    if not legends:
        return []
    named = {t.get_text() for leg in legends for t in leg.get_texts()}
    drawn = []
    for ax in fig.axes:
        handles, labels = ax.get_legend_handles_labels()
        drawn += [label for label in labels if not label.startswith("_")]
    return sorted(set(drawn) - named)


def check_open_figures() -> None:
    import sys

    if "matplotlib.pyplot" not in sys.modules:
        return
    import matplotlib.pyplot as plt

    for num in plt.get_fignums():
        fig = plt.figure(num)
        missing = missing_from_legends(fig)
        if missing:
            title = fig._suptitle.get_text() if fig._suptitle is not None else f"figure {num}"
            warnings.warn(f"{title!r}: the legend leaves out {missing}", LegendWarning, stacklevel=1)


def register() -> None:
    """Check before the inline backend shows and closes the cell's figures (post_execute runs in
    the order of registration, and this startup file registers first)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        shell.events.register("post_execute", check_open_figures)
