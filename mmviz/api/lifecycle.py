"""How a run opened from the user's own process ends: finished, failed on a crash, lost when killed.

The built-in trainer is a process mmviz starts and watches (:mod:`mmviz.training.runner`); a run of the user's
own loop lives in the user's process, so its end is recorded from inside that process:

- ``close()`` (or leaving the ``with`` block normally) marks it ``finished``; an exception leaving the ``with``
  block marks it ``failed`` with the exception's text, and a ``KeyboardInterrupt`` ``stopped``.
- An exception nobody catches marks every open run ``failed`` (a ``sys.excepthook`` chained before the previous
  one), and a process that exits without closing its runs finishes them (``atexit``).
- A kill (SIGKILL, or a SIGTERM the process does not handle) runs neither: the heartbeat stops, and the dashboard
  shows the run as ``lost`` after :data:`mmviz.store.LOST_AFTER_S` seconds, as for a built-in run.
"""

from __future__ import annotations

import atexit
import sys
import threading
import weakref
from typing import Any

_OPEN: weakref.WeakSet = weakref.WeakSet()
_LOCK = threading.Lock()
_INSTALLED = False


def _excepthook(exc_type, exc, tb) -> None:
    for run in list(_OPEN):
        run._end_with(exc)
    _previous_excepthook(exc_type, exc, tb)


def _at_exit() -> None:
    for run in list(_OPEN):
        run._end("finished")


_previous_excepthook = sys.excepthook


def register(run: Any) -> None:
    """Track ``run`` until it ends; installs the excepthook and the atexit handler once per process."""
    global _INSTALLED, _previous_excepthook
    with _LOCK:
        if not _INSTALLED:
            _previous_excepthook = sys.excepthook
            sys.excepthook = _excepthook
            atexit.register(_at_exit)
            _INSTALLED = True
        _OPEN.add(run)


def unregister(run: Any) -> None:
    """Stop tracking ``run`` (it has ended)."""
    with _LOCK:
        _OPEN.discard(run)


def error_text(exc: BaseException) -> str:
    """How a failure is stored: ``Type: message``."""
    return f"{type(exc).__name__}: {str(exc) or type(exc).__name__}"
