"""Chart controls shared by the live and compare pages, and drawing a figure in place."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from mmviz.viz import X_AXES, ChartOptions

PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def render_chart_controls(key: str) -> ChartOptions:
    """Smoothing (debiased EMA, raw line kept faint), x axis, log-y and points per line; returns the choice."""
    c1, c2, c3, c4 = st.columns([3, 3, 1, 2])
    smoothing = c1.slider(
        "Smoothing",
        0.0,
        0.99,
        0.6,
        0.01,
        key=f"{key}.smoothing",
        help="Debiased exponential moving average, as in TensorBoard (0 = raw). The raw line stays visible, faint. "
        "Series of 10 points or fewer are drawn raw.",
    )
    x_axis = c2.radio("x axis", X_AXES, horizontal=True, key=f"{key}.x_axis")
    log_y = c3.toggle("log y", key=f"{key}.log_y")
    max_points = c4.number_input(
        "Points per line",
        min_value=100,
        max_value=100_000,
        value=1000,
        step=100,
        key=f"{key}.max_points",
        help="Longer series are down-sampled deterministically: equal buckets of points (a power of two each, so a "
        "line keeps between about half and all of this number) each keep their minimum and maximum, plus the first "
        "and last point. The CSV download has every raw point.",
    )
    return ChartOptions(x_axis=x_axis, smoothing=float(smoothing), log_y=bool(log_y), max_points=int(max_points))


def render_figure(fig: go.Figure, key: str) -> None:
    """Draw a plotly figure full width; a stable ``key`` makes live refreshes update the chart in place."""
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG, width="stretch")


# Streamlit gives a chart a new element id whenever its figure changes (the id hashes the spec), so each live refresh
# mounts a new plotly graph and plotly's own ``uirevision`` cannot carry the user's zoom over. This script, run once
# in the page (not in an iframe), remembers per chart key the axis ranges the user zoomed or panned to and the legend
# entries hidden, and re-applies them to each new graph of that key; a double click (autoscale) forgets the zoom.
# A hover label the user is reading would vanish at each refresh too: a new graph under the resting mouse gets a
# mouse move at the pointer, so plotly shows the label there again.
_KEEP_VIEW_JS = """
<script>
(() => {
  const w = window.parent && window.parent.Plotly ? window.parent : window;
  if (w.__mmvizKeepView) return;
  w.__mmvizKeepView = true;
  const saved = {};
  let pointer = null;  // the mouse's last position in the page (client coordinates), null once it left the page
  w.document.addEventListener('mousemove', e => { pointer = [e.clientX, e.clientY]; }, true);
  w.document.documentElement.addEventListener('mouseleave', () => { pointer = null; });
  // a mouse move at the pointer on a new graph, once it is the graph under the pointer (the old one of its key can
  // still be there for a moment): plotly then draws the hover label where the mouse rests, as after a real move
  const hoverAgain = (gd, tries) => {
    if (!pointer || !gd.isConnected) return;
    const el = w.document.elementFromPoint(pointer[0], pointer[1]);
    if (el && gd.contains(el)) {
      el.dispatchEvent(new w.MouseEvent('mousemove', {clientX: pointer[0], clientY: pointer[1], bubbles: true}));
    } else if (tries > 0) {
      w.setTimeout(() => hoverAgain(gd, tries - 1), 100);
    }
  };
  const keyOf = gd => {
    const box = gd.closest('[class*="st-key-"]');
    const cls = box ? [...box.classList].find(c => c.startsWith('st-key-')) : null;
    return cls && cls.includes('chart') ? cls : null;
  };
  const attach = gd => {
    if (gd.__mmvizKept || !gd._fullLayout || typeof gd.on !== 'function') return;
    const key = keyOf(gd);
    if (!key) return;
    gd.__mmvizKept = true;
    const state = saved[key] || (saved[key] = {ranges: {}, hidden: []});
    const hidden = (gd.data || []).map((t, i) => state.hidden.includes(t.name) ? i : -1).filter(i => i >= 0);
    if (hidden.length) w.Plotly.restyle(gd, {visible: 'legendonly'}, hidden);
    if (Object.keys(state.ranges).length) w.Plotly.relayout(gd, Object.assign({}, state.ranges));
    gd.on('plotly_relayout', ev => {
      for (const k of Object.keys(ev || {})) {
        const m = /^([xy]axis\\d*)\\.(range|autorange)/.exec(k);
        if (!m) continue;
        const axis = gd._fullLayout[m[1]];
        if (!axis || axis.autorange) delete state.ranges[m[1] + '.range'];
        else state.ranges[m[1] + '.range'] = axis.range.slice();
      }
    });
    gd.on('plotly_restyle', () => {
      state.hidden = (gd.data || []).filter(t => t.visible === 'legendonly').map(t => t.name);
    });
    hoverAgain(gd, 10);
  };
  w.setInterval(() => w.document.querySelectorAll('.js-plotly-plot').forEach(attach), 250);
})();
</script>
"""


def render_view_keeper() -> None:
    """Keep each chart's zoom and hidden legend entries across refreshes (see the comment above); call once a page."""
    st.html(_KEEP_VIEW_JS, unsafe_allow_javascript=True)
