"""Which metric keys go on which live chart, and how each curve is named, coloured and dashed.

Panels claim keys by ``(split, quantity)``; keys no panel claims land on "Other signals", one facet per quantity,
so a new probe's or method's keys show up without UI changes. Inside a panel, colour = modality (fused in dark
grey), dash = how the value was measured (head split, NCM, linear probe, Shapley; pre/post modulation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import pandas as pd

FUSED_COLOR = "#3a3a3a"
NEUTRAL_PALETTE = ("#3a3a3a", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")  # curves without a modality
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
EVENT_COLORS = {"fork": "#2ca02c", "stop": "#d62728", "reinit": "#9467bd"}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")

# How a per-modality accuracy was measured, by quantity (METHODS.md §1.4: they disagree, so say which).
MEASUREMENTS = {
    "acc": "head split",
    "acc_ncm": "NCM",
    "acc_probe": "linear probe",
    "shapley": "Shapley",
    "shapley_share": "Shapley share",
    "grad_norm_pre": "pre-modulation",
    "grad_norm": "post-modulation",
}
MEASUREMENT_DASH = {
    "acc": "solid",
    "acc_ncm": "dot",
    "acc_probe": "dash",
    "shapley": "dashdot",
    "grad_norm_pre": "dot",
    "grad_norm": "solid",
}
ACCURACY_QUANTITIES = frozenset({"acc", "acc_ncm", "acc_probe", "shapley"})
CHART_SPLITS = (None, "train", "val")  # the single test point of a run is shown in the header, not charted


@dataclasses.dataclass(frozen=True)
class PanelSpec:
    """One live chart: a title, which ``(split, quantity)`` groups it shows, and how it is faceted.

    ``facet`` is ``"split"`` (one subplot per split), ``"quantity"`` (one per quantity), ``"measure"`` (one per
    split and quantity) or ``None`` (one plot).
    """

    name: str
    title: str
    claims: Callable[[str | None, str], bool]
    facet: str | None = None
    help: str = ""


PANELS: tuple[PanelSpec, ...] = (
    PanelSpec(
        "accuracy",
        "Accuracy: fused vs each modality",
        lambda s, q: q in ACCURACY_QUANTITIES,
        facet="measure",
        help="Fused accuracy and each modality's accuracy, one facet per split and per way of measuring it: head "
        "split (the modality's slice of the fused head), NCM (nearest class mean), linear probe (a fresh classifier "
        "on frozen features) and Shapley (the modality's contribution to fused accuracy). Colour = modality; "
        "clicking a legend entry hides that modality in every facet.",
    ),
    PanelSpec("loss", "Loss", lambda s, q: q == "loss", help="Training loss per step and validation loss per epoch."),
    PanelSpec(
        "gradients",
        "Gradient norm per modality (pre / post modulation)",
        lambda s, q: q in ("grad_norm", "grad_norm_pre"),
        help="L2 norm of each encoder's gradient before (dotted) and after (solid) the balancing method modulates it.",
    ),
    PanelSpec(
        "shapley",
        "Shapley shares and imbalance index",
        lambda s, q: q == "shapley_share" or q.startswith("imbalance/"),
        facet="quantity",
        help="Each modality's share of the positive Shapley contribution to val accuracy, and the imbalance index.",
    ),
    PanelSpec(
        "separability",
        "Separability of each modality's features",
        lambda s, q: q.startswith("sep/"),
        facet="quantity",
        help="k-means purity, silhouette and Fisher ratio of each modality's features on the val split.",
    ),
    PanelSpec(
        "prototypes",
        "Prototype distances",
        lambda s, q: q.startswith("proto/"),
        facet="quantity",
        help="Distance of samples to their class prototype (intra), between prototypes (inter), their margin, "
        "and how far prototypes moved since the last epoch (drift).",
    ),
    PanelSpec(
        "method",
        "Method coefficients and dropout schedule",
        lambda s, q: q.startswith("coef/") or q in ("dropout_p", "score", "ratio"),
        facet="quantity",
        help="What the balancing method applies to each modality: its coefficients, dropout probabilities, and the "
        "OGM-GE confidence score and ratio.",
    ),
    PanelSpec(
        "conflict",
        "Gradient conflict and weight drift",
        lambda s, q: q.startswith("conflict/") or q == "param_dist",
        facet="quantity",
        help="Cosine between each encoder's unimodal and fused gradients, and each encoder's distance from its "
        "initial weights.",
    ),
)
OTHER = PanelSpec("other", "Other signals", lambda s, q: True, facet="quantity", help="Every other logged key.")


def panel_for(split: str | None, quantity: str) -> PanelSpec | None:
    """The panel that shows ``(split, quantity)``, or ``None`` for keys that are not charted (the test split)."""
    if split not in CHART_SPLITS:
        return None
    for panel in PANELS:
        if panel.claims(split, quantity):
            return panel
    return OTHER


def metric_groups(frame: pd.DataFrame) -> list[tuple[str | None, str]]:
    """The distinct ``(split, quantity)`` groups of tidy rows (split ``None`` when the key has none), sorted."""
    if frame.empty:
        return []
    pairs = frame.drop_duplicates("key")[["split", "quantity"]].itertuples(index=False)
    return sorted({(s if isinstance(s, str) else None, str(q)) for s, q in pairs}, key=lambda g: (g[0] or "", g[1]))


def assign_panels(groups: Iterable[tuple[str | None, str]]) -> dict[str, list[tuple[str | None, str]]]:
    """Map each panel name to the ``(split, quantity)`` groups it shows, in panel order; empty panels omitted."""
    out: dict[str, list[tuple[str | None, str]]] = {}
    for split, quantity in sorted(set(groups), key=lambda g: (g[0] or "", g[1])):
        panel = panel_for(split, quantity)
        if panel is not None:
            out.setdefault(panel.name, []).append((split, quantity))
    order = [p.name for p in (*PANELS, OTHER)]
    return {name: out[name] for name in order if name in out}


def panel_by_name(name: str) -> PanelSpec:
    """Return the panel spec called ``name``."""
    for panel in (*PANELS, OTHER):
        if panel.name == name:
            return panel
    raise KeyError(name)


def modality_color(modality: str | None, modalities: list[str]) -> str:
    """Colour of a modality's curves: fused (or no modality) in dark grey, the others by their order."""
    if modality is None or modality == "fused":
        return FUSED_COLOR
    index = modalities.index(modality) if modality in modalities else len(modalities) + sum(map(ord, modality)) % 3
    return PALETTE[index % len(PALETTE)]


def run_color(index: int) -> str:
    """Colour of the ``index``-th run on the compare page."""
    return PALETTE[index % len(PALETTE)]


def measurement_label(split: str | None, quantity: str, modality: str | None) -> str:
    """Legend label of a curve, e.g. ``'fou · linear probe'``, ``'fused'``, ``'a · pre-modulation'``."""
    who = modality or ""
    if quantity == "acc" and modality in (None, "fused"):
        how = ""
    else:
        how = MEASUREMENTS.get(quantity, quantity.split("/")[-1] if "/" in quantity else "")
    if not who:
        return how or quantity
    return f"{who} · {how}" if how else who


def facet_title(split: str | None, quantity: str) -> str:
    """Short subplot title for a facet, e.g. ``'val'`` or ``'purity'`` or ``'coef/ogm_ge'``."""
    if quantity.startswith(("sep/", "proto/", "imbalance/", "conflict/")):
        return quantity.split("/", 1)[1]
    if quantity == "shapley_share":
        return "Shapley share"
    return f"{split}/{quantity}" if split else quantity
