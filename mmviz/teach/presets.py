"""Data presets and run sizing of the teaching lessons (pure data and logic, no Streamlit).

Every lesson run is a real run of the ``synthetic`` dataset (DATA.md §4.1) with the knobs spelled out
(``preset=custom``), sized so one run finishes in a few seconds on one CPU core: 1,500 training samples,
15 epochs, a small MLP, and only the probes the lessons read (the rest are switched off).
"""

from __future__ import annotations

import dataclasses
from typing import Any

MODALITIES = ("a", "b")
KNOB_FIELDS = ("strength", "sub", "noise")  # per modality; plus the number of classes

# What one lesson run costs (measured: 4.0-4.6 s of CPU per run, trainer process start-up included).
SIZING: dict[str, Any] = {
    "n_train": 1500,
    "epochs": 15,
    "batch_size": 64,
    "feature_dim": 64,
    "hidden_dim": 128,
    "threads": 1,  # one core per run, so two runs of a step train side by side on a 2-core laptop
}
# Probes the lessons read; every other registered probe is switched off to keep runs fast.
LESSON_PROBES = ("grad_norm", "score_ratio", "unimodal_acc", "snapshots")


@dataclasses.dataclass(frozen=True)
class DataKnobs:
    """The synthetic-data knobs the lessons expose, per modality a and b.

    ``strength``: class-mean norm (signal strength); ``sub``: sub-clusters per class (1 = linear class
    structure, more = needs non-linear features, learned later); ``noise``: pure-noise dimensions appended
    (capacity to memorise the training set); ``classes``: number of classes.
    """

    strength_a: float = 3.0
    strength_b: float = 4.5
    sub_a: int = 1
    sub_b: int = 4
    noise_a: int = 32
    noise_b: int = 32
    classes: int = 5

    def data_overrides(self, seed: int) -> dict[str, Any]:
        """The ``data`` section of the run config (the synthetic dataset's ``custom`` preset)."""
        return {
            "preset": "custom",
            "n_modalities": 2,
            "num_classes": int(self.classes),
            "n_train": SIZING["n_train"],
            "data_seed": int(seed),
            "strength_a": float(self.strength_a),
            "strength_b": float(self.strength_b),
            "sub_a": int(self.sub_a),
            "sub_b": int(self.sub_b),
            "noise_dims_a": int(self.noise_a),
            "noise_dims_b": int(self.noise_b),
        }

    def describe(self) -> str:
        """One line for captions, e.g. ``a: strength 3, 1 cluster/class · b: strength 4.5, 4 clusters/class``."""
        parts = []
        for m in MODALITIES:
            sub = getattr(self, f"sub_{m}")
            parts.append(
                f"{m}: strength {getattr(self, f'strength_{m}'):g}, {sub} cluster{'s' if sub > 1 else ''}/class, "
                f"{getattr(self, f'noise_{m}')} noise dims"
            )
        return " · ".join(parts) + f" · {self.classes} classes"


# The three presets of the issue: the synthetic dataset's presets of the same name, except that 'dominant' and
# 'balanced' use 5 classes instead of 10 (the same gap, and class clusters a 2-D PCA can show in lesson 5).
PRESETS: dict[str, DataKnobs] = {
    # a is linear (learned first) and starves b, which needs non-linear features (DATA.md §3.4)
    "dominant": DataKnobs(strength_a=3.0, strength_b=4.5, sub_a=1, sub_b=4, classes=5),
    # control: both linear and equally strong, no gap expected
    "balanced": DataKnobs(strength_a=3.0, strength_b=3.0, sub_a=1, sub_b=1, classes=5),
    # a is the target (2 clusters per class); b is an easy, strong helper only there at training time
    "cotrain": DataKnobs(strength_a=3.0, strength_b=6.0, sub_a=2, sub_b=1, classes=10),
}
PRESET_LABELS = {
    "dominant": "one modality dominant",
    "balanced": "balanced",
    "cotrain": "negative co-learning (target a + easy helper b)",
}


def probe_overrides(epochs: int) -> dict[str, dict[str, Any]]:
    """The ``probes`` section: the lesson probes on (linear probe and snapshot at the last epoch only), others off.

    The lesson probes have no time budget (``max_overhead=0``): the lessons decide their answers from the per-step
    series, which a budget thins by the machine's speed (1 step in 7 on a 2-core CPU), so the same seed could give
    another answer on a busy machine. It costs about 9%: the 7 default runs, trained in one process on a 2-core CPU,
    took a median of 10.7 s (10.1-11.8) this way against 9.8 s (9.3-9.9) with the budget, 3 of each interleaved.
    """
    from mmviz.probes import PROBES

    out: dict[str, dict[str, Any]] = {}
    for entry in PROBES:
        on = entry.name in LESSON_PROBES
        out[entry.name] = {"enabled": True, "max_overhead": 0.0} if on else {"enabled": False}
    out["unimodal_acc"].update(probe_every=epochs)
    out["snapshots"].update(every_n_epochs=epochs)
    return out
