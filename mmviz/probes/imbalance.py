"""One imbalance index per evaluation, the dominant modality and each modality's Shapley share."""

from __future__ import annotations

from typing import Any

from mmviz.contracts import StepInfo
from mmviz.probes.attribution import compute_imbalance
from mmviz.probes.base import Probe
from mmviz.probes.common import epoch_cache
from mmviz.probes.configs import ImbalanceConfig
from mmviz.probes.shapley import epoch_shapley


class ImbalanceProbe(Probe):
    """The imbalance index: how unequally the modalities contribute to val accuracy, from their Shapley values.

    With ``phi_m`` the Shapley value of modality m on val accuracy (see the ``shapley`` probe; BalanceBenchmark,
    arXiv 2502.10816), ``imbalance/share/<m> = phi_m / sum_k |phi_k|`` and
    ``imbalance/index = (max_m phi_m - min_m phi_m) / sum_k |phi_k|``, in [0, 1]: 0 when all modalities contribute
    equally, 1 when one carries all the accuracy and the others nothing. For two modalities that both help it is
    ``|share_a - share_b|``; e.g. Shapley values 0.6 and 0.2 give shares 0.75 / 0.25 and index 0.5.
    ``imbalance/dominant`` is the 0-based position (in the dataset's modality order) of the modality with the
    largest Shapley value. The index measures reliance, not learning state: an intrinsically uninformative
    modality also gets a small share — compare with ``sep/purity`` and ``val/acc_probe`` to tell the two apart.
    Logged whenever the ``shapley`` probe runs (it reuses that epoch's values), or on its own cadence (at most
    every epoch) when that probe is off.
    """

    config_cls = ImbalanceConfig
    order = 20  # after shapley (it reuses this epoch's Shapley values when they are there)

    def on_epoch_end(self, epoch: int, info: StepInfo, evaluation: Any) -> None:
        shapley_on = "shapley" in self.ctx.enabled_probes
        if shapley_on and "shapley" not in epoch_cache(self.ctx):
            return  # follow the shapley probe's schedule rather than paying for Shapley values twice
        index, dominant, shares = compute_imbalance(epoch_shapley(self.ctx, evaluation))
        self.log("imbalance/index", index)
        self.log("imbalance/dominant", float(dominant))
        for m, share in shares.items():
            self.log(f"imbalance/share/{m}", share)
