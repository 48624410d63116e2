"""How runs are named in the dashboard: statuses, colours, durations and select-box labels (no heavy imports)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

ACTIVE = ("running", "queued")
STATUS_COLORS = {  # markdown colours of each status
    "queued": "gray",
    "running": "green",
    "finished": "blue",
    "failed": "red",
    "stopped": "orange",
    "diverged": "red",
    "lost": "violet",
}


_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def md(text: object) -> str:
    """``text`` escaped so that Streamlit shows it literally wherever it renders markdown.

    Every piece of user text (run names, tags, notes, dataset paths, error messages that quote them) goes through
    this before it reaches ``st.markdown``, ``st.caption``, ``st.error`` / ``st.success`` / ``st.toast``, a widget
    label, an expander or tab title, a radio option or a progress text: all of those render markdown, so a name like
    ``![p](http://host/x.png)`` would otherwise make the browser fetch the URL. Each ASCII punctuation character gets
    a backslash (CommonMark's escape, which Streamlit's emoji, colour and math extensions respect too) and line
    breaks become spaces. Select-box and multiselect *options*, data frames and plain ``st.text`` are not markdown:
    pass them the raw text.
    """
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(text)))


def format_duration(seconds: float | None) -> str:
    """``'1h 02m'``, ``'3m 07s'`` or ``'12s'``; empty for a run that has not started."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return ""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def epoch_text(value) -> str:
    """A fork epoch as text (stored as an integer, read back as float or NaN through pandas)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    return str(int(value))


def run_label(run: Mapping) -> str:
    """How a run is named in select boxes: name, status and id."""
    status = run.get("effective_status") or run.get("status") or "?"
    return f"{run.get('name') or run['run_id']} · {status} · {run['run_id']}"


def run_method_label(run: Mapping) -> str:
    """A run's name, method and id (for lists that are not redrawn as the status changes)."""
    return f"{run.get('name') or run['run_id']} · {run.get('method')} · {run['run_id']}"
