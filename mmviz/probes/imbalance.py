"""One imbalance index per evaluation, the dominant modality and each modality's Shapley share."""

from __future__ import annotations

import dataclasses
from typing import Any

from mmviz.contracts import StepInfo
from mmviz.measures import compute_imbalance
from mmviz.probes.base import AnalysisProbe, EpochProbeConfig
from mmviz.probes.record import epoch_record
from mmviz.probes.registry import PROBES
from mmviz.probes.shapley import coalition_arrays, record_shapley


@dataclasses.dataclass(frozen=True)
class ImbalanceConfig(EpochProbeConfig):
    """Settings of the imbalance probe."""


@PROBES.register(
    "imbalance",
    config=ImbalanceConfig,
    cadence="epoch",
    keys=("imbalance/index", "imbalance/dominant/<m>", "imbalance/share/<m>"),
)
class ImbalanceProbe(AnalysisProbe):
    """The imbalance index: how unequally the modalities contribute to val accuracy, from their Shapley values.

    With ``phi_m`` the Shapley value of modality m on val accuracy (see the ``shapley`` probe; BalanceBenchmark,
    arXiv 2502.10816), ``imbalance/share/<m> = phi_m / sum_k |phi_k|`` (negative when the modality lowers the
    accuracy) and ``imbalance/index = (max_m phi_m - min_m phi_m) / (2 max_m |phi_m|)``, in [0, 1]: 0 when all
    modalities contribute equally, 0.5 when the weakest contributes nothing (one modality carries all the
    accuracy), above 0.5 when the weakest *hurts*, and 1 when it takes away as much accuracy as the strongest adds.
    So a modality that helps a little (index just under 0.5) reads differently from one that hurts (above 0.5).
    For two modalities that both help with shares ``s_a >= s_b`` it is ``(s_a - s_b) / (2 s_a)``; e.g. Shapley
    values 0.6 and 0.2 give shares 0.75 / 0.25 and index 1/3. ``imbalance/dominant/<m>`` names the modality with
    the largest Shapley value: 1 for it, 0 for the others (all 0 when no modality contributes anything), so the
    export and the banner read the dominant modality's name from the key. The index measures reliance, not
    learning state: an intrinsically uninformative modality also gets a small share — compare with
    ``sep/purity`` and ``val/acc_probe`` to tell the two apart. Logged whenever the ``shapley`` probe runs (it
    reuses that epoch's values), or on its own cadence (at most every epoch) when that probe is off.
    """

    config_cls = ImbalanceConfig
    requires = frozenset({"fuse"})
    order = 20  # after shapley (it reuses this epoch's Shapley values when they are there)

    def measure(self, epoch: int, info: StepInfo, evaluation: Any, record: dict) -> dict[str, Any]:
        return coalition_arrays(self.ctx, evaluation, record)

    def on_epoch_end(self, epoch: int, info: StepInfo, evaluation: Any) -> None:
        shapley_on = "shapley" in self.ctx.enabled_probes
        if shapley_on and not epoch_record(self.ctx, epoch, info).measured("shapley"):
            return  # follow the shapley probe's schedule rather than measuring the coalitions on epochs it skips
        super().on_epoch_end(epoch, info, evaluation)

    def analyse(self, meta: dict[str, Any], arrays: dict[str, Any]) -> list[tuple[str, float]]:
        index, dominant, shares = compute_imbalance(record_shapley(meta, arrays))
        rows = [("imbalance/index", index)]
        rows += [(f"imbalance/dominant/{m}", float(m == dominant)) for m in meta["modalities"]]
        rows += [(f"imbalance/share/{m}", share) for m, share in shares.items()]
        return rows
