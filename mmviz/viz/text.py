"""User text inside plotly figures: shown as literal text.

Plotly reads a subset of HTML in every text it draws (legend names, titles, tick labels, hover labels: ``<b>``,
``<br>``, ``<a href>``...) and fills ``%{...}`` in hover templates. A run name, a class name from a user's file
or a swept value can hold either, so every such text passes through :func:`plotly_text` before it reaches a
figure: ``&``, ``<``, ``>`` become entities plotly decodes back to the characters, and ``%`` becomes ``&#37;``
so a template never sees a ``%{`` that the user typed.
"""

from __future__ import annotations


def plotly_text(text: object) -> str:
    """``text`` as a string plotly draws literally (see the module docstring)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("%", "&#37;")
