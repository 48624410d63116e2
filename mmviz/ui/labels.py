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


def run_method_label(run: Mapping) -> str:
    """A run's name, method and id (for lists that are not redrawn as the status changes)."""
    return f"{run.get('name') or run['run_id']} · {run.get('method')} · {run['run_id']}"


def short_id(run_id: str) -> str:
    """The random tail of a run id (``20261201-105707-8168`` -> ``8168``): enough to tell apart runs that share a
    name."""
    return run_id.rsplit("-", 1)[-1]


def chart_names(runs: list[Mapping]) -> dict[str, str]:
    """``{run_id: legend name}``: ``'name (method)'``, plus ``' · id'`` where two of ``runs`` share a name, so every
    line of a chart (legend and hover) names exactly one run and says how it was trained."""
    names = {r["run_id"]: str(r.get("name") or r["run_id"]) for r in runs}
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    method = {r["run_id"]: r.get("method") for r in runs}

    def label(rid: str, tail) -> str:
        text = f"{names[rid]} ({method[rid]})"
        return text if counts[names[rid]] == 1 else f"{text} · {tail(rid)}"

    out = {rid: label(rid, short_id) for rid in names}
    if len(set(out.values())) < len(out):  # the short ids clash too: use the whole ids
        out = {rid: label(rid, str) for rid in names}
    return out


def plain(text: str) -> str:
    """What :func:`md`-escaped ``text`` reads as on screen (its backslash escapes undone): for tests and exports."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


# ---------------------------------------------------------------- what a run can have (unimodal runs: less)
NOT_APPLICABLE = "—"  # shown for what a run cannot have (a unimodal run has no imbalance); "" = not logged yet
UNIMODAL_LACKS = ("imbalance/", "shapley")  # quantity prefixes that need two modalities or more


def is_unimodal(run: Mapping) -> bool:
    """Whether ``run`` trains a single modality (the ``unimodal`` method, or a dataset view with one modality)."""
    mods = run.get("modalities")
    return run.get("method") == "unimodal" or (isinstance(mods, (list, tuple)) and len(mods) == 1)


def trained_modalities(run: Mapping) -> list[str]:
    """The modalities ``run`` trains: the chosen one of a ``unimodal`` run (its first when unset), else all."""
    mods = list(run.get("modalities") or []) if isinstance(run.get("modalities"), (list, tuple)) else []
    if run.get("method") != "unimodal":
        return mods
    config = run.get("config") if isinstance(run.get("config"), Mapping) else {}
    chosen = (config.get("method_params") or {}).get("modality") or ""
    return [chosen] if chosen else mods[:1]


def applies(run: Mapping, quantity: str, modality: str | None = None) -> bool:
    """Whether ``[split/]quantity[/modality]`` means something for ``run``.

    A unimodal run has no imbalance index, Shapley shares or dominant modality, and nothing of the modalities it
    does not train (their head slice and features are untrained: a 'pix head split 10%' of a fou-only run is noise).

    >>> run = {"method": "unimodal", "modalities": ["pix", "fou"], "config": {"method_params": {"modality": "fou"}}}
    >>> applies(run, "imbalance/index"), applies(run, "acc", "pix"), applies(run, "acc", "fou"), applies(run, "loss")
    (False, False, True, True)
    """
    if not is_unimodal(run):
        return True
    if quantity.startswith(UNIMODAL_LACKS):
        return False
    return modality in (None, "fused") or modality in trained_modalities(run)


def format_value(value, run: Mapping, quantity: str, modality: str | None = None, percent: bool = False) -> str:
    """A table cell: ``'0.42'`` (or ``'93%'``), ``'—'`` when it does not apply to ``run``, ``''`` when not logged."""
    if not applies(run, quantity, modality):
        return NOT_APPLICABLE
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{100 * float(value):.1f}%" if percent else f"{float(value):.2f}"


def format_compare_table(table, runs) -> object:
    """The compare table (:func:`mmviz.analysis.summary.compute_compare_table`) as shown: accuracies as ``'93.3%'``,
    the imbalance index as ``'0.42'``, and ``'—'`` where a measure does not apply to the run (a unimodal run has no
    imbalance index and nothing of the modalities it does not train); an empty cell means not logged."""
    by_id = {r["run_id"]: r for r in runs}
    shown = table.copy()
    for column, (quantity, modality, percent) in table.attrs.get("cells", {}).items():
        if column in shown:
            shown[column] = [
                format_value(v, by_id.get(rid, {}), quantity, modality, percent)
                for v, rid in zip(table[column], table["run_id"], strict=True)
            ]
    return shown
