"""Progress bars for people watching a kernel, and none where nobody watches.

:func:`tqdm` is ``tqdm.auto.tqdm`` (a widget in JupyterLab, text in a terminal) that honours
``TQDM_DISABLE=1`` for the notebook widget too: ``scripts/build-book.sh`` and the test suite set it,
because a bar in a static page is frozen at its first frame ("0%|"), and tqdm's own environment
default does not reach its notebook class, whose ``disable=False`` argument overrides it.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

__all__ = ["tqdm", "bars_disabled"]


def bars_disabled() -> bool:
    """Whether ``TQDM_DISABLE`` asks for no bars (``1``, ``true`` or ``yes``)."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes")


def tqdm(iterable: Iterable | None = None, **kwargs: Any):
    """``tqdm.auto.tqdm(iterable, **kwargs)``, disabled when the caller disables it *or*
    :func:`bars_disabled` (a caller's ``progress=True`` does not bring a bar back into the book)."""
    from tqdm.auto import tqdm as auto

    kwargs["disable"] = bool(kwargs.get("disable", False)) or bars_disabled()
    return auto(iterable, **kwargs)
