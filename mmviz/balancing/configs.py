"""Balancing methods' declarations: each method's settings (a frozen config dataclass) and its registry entry.

Torch-free, so that the dashboard lists the methods and builds their forms without importing torch. Each entry
points at its implementation, ``"mmviz.balancing.<module>:<Class>"`` (one file per method), imported when a run
first uses it; the implementation's docstring is the description the dashboard shows (read from its source file
without importing it). ``requires`` is what the method needs of the model and the run
(:data:`mmviz.contracts.CAPABILITIES`, :data:`mmviz.contracts.RUN_REQUIREMENTS`), checked before training.
"""

from __future__ import annotations

import dataclasses

from mmviz.balancing.registry import METHODS
from mmviz.balancing.settings import MethodConfig, ModulationWindow, modality_map
from mmviz.config import Config, param
from mmviz.errors import ConfigError
from mmviz.recipes import Recipe, RecipeSetting


@dataclasses.dataclass(frozen=True)
class AGMConfig(ModulationWindow, RecipeSetting):
    """Settings of AGM."""

    alpha: float = param(
        1.5,
        "Modulation strength alpha in kappa = exp(alpha * min(r_mean - r, 10)) "
        "(author's CREMA-D value 1.5; BalanceMM 0.1).",
        low=0.0,
        high=10.0,
    )
    masked_forward: str = param(
        "features",
        "'features': reuse the step's features and pass zeros through the absent "
        "encoder only (eval mode); 'eval': whole eval-mode forwards of zero-masked inputs "
        "(official code).",
        choices=("features", "eval"),
    )
    grad_clip: str = param(
        "conditional",
        "'conditional' (official code): when any element of the fused head's weight gradient lies outside [-1, 1], "
        "clip the whole model's gradient to norm 1 before the step; 'off': never clip.",
        choices=("conditional", "off"),
    )
    running_mean: str = param(
        "previous",
        "Running mean of the response losses that kappa compares with: 'previous' = over the steps before this "
        "one (official code: updated after kappa); 'inclusive' = this step included.",
        choices=("previous", "inclusive"),
    )


SCHEDULES = ("constant", "linear", "cosine", "step")


DRAW_MODES = ("shared_per_batch", "independent_per_batch", "independent_per_sample")


@dataclasses.dataclass(frozen=True)
class AMDConfig(RecipeSetting, MethodConfig):
    """Settings of aggressive modality dropout."""

    target: str = param(
        "", "Target modality, never dropped and evaluated alone each epoch ('' = none).", modalities=True
    )
    drop: tuple[str, ...] = param(
        (), "Modalities that may be dropped (empty = every modality except the target).", modalities=True
    )
    p: float = param(
        0.8,
        "Drop probability of each dropped modality at the end of its schedule (paper: >= 0.8).",
        low=0.0,
        high=1.0,
        step=0.05,
    )
    p_modality: tuple[str, ...] = modality_map("Per-modality overrides of p.", low=0.0, high=1.0, example="b=0.5")
    schedule: str = param(
        "constant",
        "How p moves over training: constant (paper), linear or cosine ramp from "
        "p_start, or step (p_start during the warm-up, then p).",
        choices=SCHEDULES,
    )
    p_start: float = param(
        0.0,
        "Drop probability at the start of a linear/cosine ramp or during the step warm-up.",
        low=0.0,
        high=1.0,
        step=0.05,
    )
    ramp_fraction: float = param(
        0.3, "Fraction of training taken by the linear/cosine ramp or the step warm-up.", low=0.0, high=1.0, step=0.05
    )
    draw_mode: str = param(
        "shared_per_batch",
        "One uniform draw per batch for all modalities (paper), one per "
        "modality and batch, or one per modality and sample.",
        choices=DRAW_MODES,
    )
    evaluate_on: str = param(
        "full",
        "Inputs of the run's val/test evaluation: 'full' (all modalities) or 'target' "
        "(helpers zeroed, as the paper evaluates and selects checkpoints).",
        choices=("full", "target"),
    )

    def check(self) -> None:
        super().check()
        if self.evaluate_on == "target" and not self.target:
            raise ConfigError(
                f"The 'evaluate_on' parameter of {self.title()} is 'target', but no 'target' modality "
                "is set. Set method.target or use evaluate_on=full."
            )


@dataclasses.dataclass(frozen=True)
class CGGMConfig(RecipeSetting, Config):
    """Settings of CGGM."""

    rho: float = param(
        1.3,
        "Overall gradient scale rho: encoder m's gradient is multiplied by rho * B^m "
        "(official: 1.3; 1.0 for segmentation).",
        low=0.0,
        high=10.0,
    )
    lam: float = param(
        0.2, "Weight lambda of the direction loss (official: 0.2 MOSI/IEMOCAP, 0.05 Food-101).", low=0.0, high=10.0
    )
    direction: str = param(
        "gradient",
        "Direction term: 'gradient' = cosine between the current-step gradients of "
        "the fused and auxiliary losses w.r.t. their logits (paper); 'code' = cosine between the "
        "fused head's weight block and the auxiliary classifier's final weight (official code).",
        choices=("gradient", "code"),
    )
    smoothing: float = param(
        0.99,
        "EMA factor on the auxiliary accuracies before taking their change (0 = raw "
        "per-batch change, as the official code; ~1/(1 - factor) steps are averaged).",
        low=0.0,
        high=0.9999,
    )
    b_clip: str = param(
        "clip",
        "'clip': B^m clipped to [0, b_max] (B explodes or flips sign when the changes nearly cancel); "
        "'none': the official code's unclipped B.",
        choices=("clip", "none"),
    )
    b_max: float = param(1.0, "Upper end of the B^m clip (b_clip=clip).", low=0.0, high=10.0)
    aux_hidden: int = param(
        0,
        "Hidden width of the auxiliary MLPs (0 = the modality's feature size, needed by "
        "direction=code to match the head's weight shape).",
        low=0,
        high=8192,
    )
    aux_lr: float = param(
        5e-4,
        "Learning rate of the auxiliary classifiers' own Adam optimiser (official: 5e-4).",
        low=0.0,
        low_open=True,
        high=1.0,
        log=True,
    )
    clip_norm: float = param(
        0.0, "Clip the model's gradient norm before the step (official code: 0.8; 0 = off).", low=0.0, high=1000.0
    )


@dataclasses.dataclass(frozen=True)
class GBlendingConfig(Config):
    """Settings of G-Blending."""

    super_epoch: int = param(
        5,
        "Epochs per re-estimation window of the blending weights (BalanceMM: 10 of 30 epochs; 5 suits our short runs).",
        low=1,
        high=10000,
    )
    min_delta_o: float = param(
        0.01,
        "Lower clip of |Delta O| in w ~ Delta G / Delta O^2 (keeps a head that does not "
        "overfit from taking every weight at 1 / 0).",
        low=0.0,
        low_open=True,
        high=10.0,
        log=True,
    )
    min_weight: float = param(
        0.05,
        "Floor of every head's weight: w = floor + (1 - K floor) * w_raw (keeps the fused "
        "head, used for prediction, trained).",
        low=0.0,
        high=0.25,
    )


@dataclasses.dataclass(frozen=True)
class MLAConfig(RecipeSetting, MethodConfig):
    """Settings of MLA."""

    projection: str = param(
        "replace",
        "Shared-head weight gradient: 'replace' G <- G P^T (paper), 'add' "
        "G <- G + G P^T (BalanceMM), or 'off' (plain alternating training).",
        choices=("replace", "add", "off"),
    )
    fusion_mode: str = param(
        "dynamic",
        "Test-time fusion: 'dynamic' per-sample entropy weights (paper) or 'fixed' weights.",
        choices=("dynamic", "fixed"),
    )
    fixed_weights: tuple[str, ...] = modality_map(
        "Weights of fusion_mode=fixed; empty = equal weights; normalised to sum 1.", low=0.0, high=1e6, example="a=0.55"
    )


@dataclasses.dataclass(frozen=True)
class OGMGEConfig(ModulationWindow, RecipeSetting):
    """Settings of OGM-GE."""

    alpha: float = param(
        0.8, "Modulation strength alpha (README: 0.8 CREMA-D, 0.1 VGGSound; BalanceMM 0.3).", low=0.0, high=10.0
    )
    coefficient: str = param(
        "step",
        "'step': k = 1 - tanh(alpha * rho) (paper/code, jumps at rho = 1); "
        "'continuous': k = 1 - tanh(alpha * (rho - 1)).",
        choices=("step", "continuous"),
    )
    ge: bool = param(True, "Add Gaussian noise N(0, std(g)^2) to the modulated gradients (GE); off = plain OGM.")
    params: str = param(
        "auto",
        "Encoder parameters modulated: 'auto' = conv weights when the encoder has convs, "
        "else all; 'conv_only' (official code); 'all'.",
        choices=("auto", "conv_only", "all"),
    )
    tie: str = param(
        "damp_first",
        "When every score is equal (rho = 1): 'damp_first' damps the first modality by 1 - tanh(alpha) as the "
        "official code's else-branch does; 'none' damps nobody.",
        choices=("damp_first", "none"),
    )


@dataclasses.dataclass(frozen=True)
class PMRConfig(ModulationWindow, RecipeSetting):
    """Settings of PMR."""

    alpha: float = param(
        1.0,
        "Strength alpha of the slower modality's prototypical cross-entropy (code default 1; "
        "scripts 2-5; BalanceMM 0.6).",
        low=0.0,
        high=20.0,
    )
    coefficient: str = param(
        "step",
        "Shape f of beta = alpha * f(rho - 1): 'step' (official code: alpha or 0), "
        "'tanh' or 'linear' (paper: grows with the imbalance).",
        choices=("step", "tanh", "linear"),
    )
    momentum_coef: float = param(
        0.2, "EMA momentum mu of the prototypes: c <- (1 - mu) c_new + mu c_old.", low=0.0, high=1.0
    )
    first_update: str = param(
        "replace",
        "The prototype update after the first epoch: 'replace' the initial prototypes by the fresh class means "
        "(official code: no blend while its 0-based epoch is 0) or 'blend' them with the EMA like later updates.",
        choices=("replace", "blend"),
    )
    proto_fraction: float = param(
        0.1,
        "Fraction of training batches used to recompute the prototypes each epoch.",
        low=0.0,
        low_open=True,
        high=1.0,
    )
    temperature: float = param(
        1.0,
        "Temperature T of softmax(-distance / T) (the code's flag is unused, i.e. 1).",
        low=0.0,
        low_open=True,
        high=1000.0,
        log=True,
    )
    entropy_weight: float = param(
        0.0,
        "Weight of the paper-only entropy regulariser on the leading modality's "
        "prototype distribution (0 = off, as in the released code).",
        low=0.0,
        high=10.0,
    )
    entropy_epochs: int = param(
        5, "Epochs (from the start) during which the entropy regulariser acts.", low=0, high=100000
    )


@dataclasses.dataclass(frozen=True)
class RelearnConfig(RecipeSetting, Config):
    """Settings of Diagnosing & Re-learning."""

    lam: float = param(
        3.0, "Re-init strength lambda: alpha = tanh(lambda * gap) (official and BalanceMM: 3).", low=0.0, high=100.0
    )
    reinit_every: int = param(
        10, "E_r: diagnose and re-initialise after every E_r epochs (paper 20 of 90 epochs).", low=1, high=100000
    )
    reinit_num: int = param(2, "N_r: at most this many re-initialisations (paper 3).", low=0, high=100000)
    reinit_timing: str = param(
        "official",
        "When the re-inits happen: 'official' after epochs E_r + 1, 2 E_r + 1, ... (the code tests its 0-based "
        "epoch, so E_r = 20 re-initialises after epochs 21, 41, 61); 'every' after epochs E_r, 2 E_r, ...",
        choices=("official", "every"),
    )
    diagnosis: str = param(
        "purity_gap",
        "Learning state: |purity_train - purity_val| (official code) or the "
        "train purity alone (the paper's 'separability').",
        choices=("purity_gap", "train_purity"),
    )
    bn_buffers: str = param(
        "blend",
        "BatchNorm running mean/var at a re-init: blended like the weights, or kept (official code).",
        choices=("blend", "keep"),
    )
    momentum: str = param(
        "reset",
        "Optimiser state (momentum / Adam moments) of a re-initialised encoder: reset, or "
        "kept (official code: pushes the weights back towards the pre-reset solution).",
        choices=("reset", "keep"),
    )
    max_samples: int = param(
        10000,
        "At most this many samples per split enter k-means (a fixed random subset).",
        low=10,
        high=10_000_000,
        log=True,
    )
    kmeans_seed: int = param(0, "random_state of k-means and of the sample subset.", low=0, high=2**31 - 1)
    kmeans_n_init: int = param(
        1,
        "k-means restarts per diagnosis (the lowest-inertia run is kept); 1 = scikit-learn's default as the "
        "official code, which does not set it ('auto': one k-means++ run since scikit-learn 1.4).",
        low=1,
        high=100,
    )


@dataclasses.dataclass(frozen=True)
class AuxLossConfig(MethodConfig):
    """Settings of the multi-loss baseline."""

    weight: float = param(
        1.0, "Weight w of every modality's own cross-entropy (L = CE(fused) + sum_m w_m CE(o^m)).", low=0.0, high=100.0
    )
    weights: tuple[str, ...] = modality_map(
        "Per-modality overrides of 'weight' (e.g. --set method.weights=b=2,a=0.5).", low=0.0, high=100.0, example="b=2"
    )


@dataclasses.dataclass(frozen=True)
class UnimodalConfig(Config):
    """Settings of the unimodal reference."""

    modality: str = param("", "The modality to train alone ('' = the dataset's first modality).")


# ---- declarations ----


def sgd_step70(lr: float) -> dict[str, object]:
    """The optimiser of the GeWu-Lab family of official code (OGM-GE, PMR, MLA, AGM): SGD at ``lr``, momentum 0.9,
    weight decay 1e-4, StepLR(70, x0.1); each recipe's source names the lines."""
    return {
        "name": "sgd",
        "lr": lr,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "schedule": "step",
        "step_size": 70,
        "gamma": 0.1,
    }


METHODS.declare(
    "agm",
    "mmviz.balancing.agm:AGM",
    config=AGMConfig,
    kind="gradient",
    paper_recipe=Recipe(
        {
            "optim": sgd_step70(1e-4),
            "train": {"epochs": 100, "batch_size": 64},
            "method": {"alpha": 1.5, "grad_clip": "conditional"},
        },
        "lihong2303/AGM_ICCV2023@5a65542c tasks/CREMAD_task.py L36-37 (SGD momentum 0.9, wd 1e-4, StepLR), "
        "utils/config.py L77-78 (step 70, x0.1), README train command (lr 1e-4, batch 64, 100 epochs), "
        "run/CREMAD_main.py L230-243 (conditional clip); alpha 1.5 whole run from the author in issues #3/#5",
    ),
)
METHODS.declare(
    "amd",
    "mmviz.balancing.amd:AggressiveModalityDropout",
    config=AMDConfig,
    kind="balancing",
    paper_recipe=Recipe(
        {
            "optim": {"name": "adam", "lr": 1e-4, "weight_decay": 0.0, "schedule": "none"},
            "train": {"epochs": 40, "batch_size": 30},
        },
        "nmagal/modality_drop_for_colearning@3cf784fd code/run_model_IEMOCAP.ipynb config cell (batchsize 15*2, "
        "num_epochs 40, lr 1e-4), code/training_loops.py L53 (Adam), L58 (ReduceLROnPlateau patience 100: never "
        "fires in 40 epochs)",
    ),
)
METHODS.declare(
    "cggm",
    "mmviz.balancing.cggm:CGGM",
    config=CGGMConfig,
    kind="balancing",
    paper_recipe=Recipe(
        {
            "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "none"},
            "train": {"epochs": 30, "batch_size": 64},
            "method": {
                "rho": 1.3,
                "lam": 0.2,
                "aux_lr": 5e-4,
                "clip_norm": 0.8,
                "smoothing": 0.0,
                "b_clip": "none",
                "direction": "code",
            },
        },
        "zrguo/CGGM@21e428cb run/mosi_run.py and run/iemo_run.py L43-56 (batch 64, clip 0.8, lr 1e-3, cls_lr 5e-4, "
        "Adam, 30 epochs, rou 1.3, lamda 0.2), src/msatrain.py L21-33 (optimisers), L106-127 (raw B, clip, step)",
        "ReduceLROnPlateau(patience 10, x0.1) on the validation loss (no mmviz schedule).",
    ),
)
METHODS.declare("gblending", "mmviz.balancing.gblending:GBlending", config=GBlendingConfig, kind="objective")
METHODS.declare(
    "mla",
    "mmviz.balancing.mla:MLA",
    config=MLAConfig,
    kind="balancing",
    requires=frozenset({"shared_head"}),
    paper_recipe=Recipe(
        {
            "model": {"fusion": "shared_head"},
            "optim": sgd_step70(1e-3),
            "train": {"epochs": 100, "batch_size": 64},
        },
        "Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation@ab6c1845 main.py L28-34 (batch 64, "
        "100 epochs, SGD lr 1e-3, StepLR 70 x0.1), L749 (momentum 0.9, wd 1e-4), L760 (StepLR), README command",
    ),
)
METHODS.declare(
    "ogm_ge",
    "mmviz.balancing.ogm_ge:OGMGE",
    config=OGMGEConfig,
    kind="gradient",
    requires=frozenset({"unimodal_logits"}),
    paper_recipe=Recipe(
        {
            "optim": sgd_step70(1e-3),
            "train": {"epochs": 100, "batch_size": 64},
            "method": {"alpha": 0.8, "modulation_starts": 1, "modulation_ends": 51},
        },
        "GeWu-Lab/OGM-GE_CVPR2022@343dc1d9 main.py L33-43 (batch 64, 100 epochs, SGD lr 1e-3, StepLR 70 x0.1, "
        "modulation epochs 0-50 0-based), L246-247 (momentum 0.9, wd 1e-4), README (alpha 0.8 for CREMA-D)",
    ),
)
METHODS.declare(
    "pmr",
    "mmviz.balancing.pmr:PMR",
    config=PMRConfig,
    kind="objective",
    paper_recipe=Recipe(
        {
            "optim": sgd_step70(1e-3),
            "train": {"epochs": 150, "batch_size": 64},
            "method": {"alpha": 3.0, "momentum_coef": 0.0, "modulation_starts": 1, "modulation_ends": 101},
        },
        "fanyunfeng-bit/Modal-Imbalance-PMR@3615e489 bash.sh L58 (CREMA-D Proto: lr 1e-3, 150 epochs, "
        "modulation 0-100, alpha 3, momentum_coef 0), main_Prototype_grad.py L36-45 (SGD, batch 64, StepLR 70 x0.1), "
        "L464-465 (momentum 0.9, wd 1e-4)",
        "the script runs FiLM fusion; the recipe keeps the run's fusion (model.fusion).",
    ),
)
METHODS.declare(
    "relearn",
    "mmviz.balancing.relearn:Relearn",
    config=RelearnConfig,
    kind="balancing",
    paper_recipe=Recipe(
        {
            "optim": {"name": "sgd", "lr": 2e-3, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "none"},
            "train": {"epochs": 90, "batch_size": 64},
            "method": {"lam": 3.0, "reinit_every": 20, "reinit_num": 3, "reinit_timing": "official"},
        },
        "GeWu-Lab/Diagnosing_Relearning_ECCV2024@025085ea code/script/ours.sh (move_lambda 3, reinit_epoch 20, "
        "reinit_num 3, 90 epochs), code/ours.py L34-38 (batch 64, SGD, lr 2e-3), L368 (momentum 0.9, wd 1e-4; "
        "no scheduler), L418-427 (re-init timing)",
    ),
)
METHODS.declare(
    "aux_loss",
    "mmviz.balancing.aux_loss:AuxLoss",
    config=AuxLossConfig,
    kind="objective",
    requires=frozenset({"unimodal_logits"}),
)
METHODS.declare("baseline", "mmviz.balancing.baseline:Baseline", kind="reference")
METHODS.declare("unimodal", "mmviz.balancing.baseline:Unimodal", config=UnimodalConfig, kind="reference")
METHODS.declare("ume", "mmviz.balancing.ume:UME", kind="objective", requires=frozenset({"unimodal_logits"}))
