"""A stop request that survives a signal raised where Python ignores exceptions.

A signal handler that raises (``KeyboardInterrupt`` for Ctrl-C, the command line's ``Terminated``
for SIGTERM) runs in whatever frame the main thread is executing. When that frame is a weakref
callback, a ``__del__`` or a garbage-collector hook, Python prints "Exception ignored in ..." and
carries on, so the run never stops. The handler therefore also *records* the request here, and the
training and evaluation loops call :func:`check` once per step, which raises the recorded exception
if the first one was swallowed. While a command runs, :func:`quiet_swallowed_stops` keeps Python
from printing that swallowed raise as "Exception ignored in ...", a traceback the user has no use
for (the request is recorded and stops the run at the next check).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_pending: type[BaseException] | None = None


def request(exc_type: type[BaseException]) -> None:
    """Record that ``exc_type`` should stop the run (called by a signal handler before it raises)."""
    global _pending
    _pending = exc_type


def pending() -> type[BaseException] | None:
    """The exception type of an unanswered stop request, or None."""
    return _pending


def clear() -> None:
    """Forget the request: the caller has caught the exception and is handling it."""
    global _pending
    _pending = None


def check() -> None:
    """Raise the recorded stop request, once; a no-op when none is pending (one global read)."""
    global _pending
    if _pending is not None:
        exc_type, _pending = _pending, None
        raise exc_type()


@contextmanager
def quiet_swallowed_stops() -> Iterator[None]:
    """Within the block, a recorded stop request that an ignoring frame swallowed is not printed.

    Any other unraisable exception still goes to the hook that was installed before the block.
    """
    previous: Callable = sys.unraisablehook

    def hook(unraisable) -> None:  # sys.UnraisableHookArgs
        exc_type = unraisable.exc_type
        if (_pending is not None and isinstance(exc_type, type) and issubclass(exc_type, KeyboardInterrupt)
                and issubclass(exc_type, _pending)):
            return   # recorded: check() raises it at the next step
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous
