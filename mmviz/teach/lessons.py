"""The five lessons as data: per step a narrative, the controls that matter, a question, the runs and the charts.

Texts say what to look for; they never state a result. The results (and which answer was right) are computed
from the runs by :mod:`mmviz.teach.verdicts` after the runs finish.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mmviz.teach.controls import METHOD_SHORT, knobs_from
from mmviz.teach.runs import RunSpec, make_spec


@dataclasses.dataclass(frozen=True)
class Question:
    """A "predict before you run" question: a prompt and its options (the right one is decided by the runs)."""

    prompt: str
    options: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of a lesson.

    Attributes:
        title: short title.
        narrative: what happens in this step and what to look for (markdown).
        controls: names of the controls shown in this step (others keep their values, hidden).
        question: the prediction asked before running.
        runs: roles of the runs the step needs (see :func:`specs_for`).
        charts: names of the charts that answer the question (drawn by ``mmviz.ui.teach``).
        verdict: name of the function in :mod:`mmviz.teach.verdicts` that reads the answer off the runs.
    """

    title: str
    narrative: str
    controls: tuple[str, ...]
    question: Question
    runs: tuple[str, ...]
    charts: tuple[str, ...]
    verdict: str


@dataclasses.dataclass(frozen=True)
class Lesson:
    """A lesson: a number, a title, a one-paragraph introduction, its control group, its steps, and whether it
    offers every data knob (the lessons that introduce a data set do)."""

    number: int
    title: str
    intro: str
    group: str
    steps: tuple[Step, ...]
    data_knobs: bool = False


_DATA = ("preset", "strength_a")
LESSONS: tuple[Lesson, ...] = (
    Lesson(
        1,
        "What imbalance looks like",
        "Two modalities, **a** and **b**, describe the same samples (think image and sound of one event). "
        "**a** is easy: each class is one blob, separable by a straight line. **b** carries a strong signal, but "
        "each class is split into several blobs, so a network needs non-linear features to use it. "
        "What does one network trained on both learn?",
        "imbalance",
        (
            Step(
                "Train on both",
                "One network, one small encoder per modality, a linear head on the joined features, trained on "
                "a and b together. The slider sets how easy **a** is.\n\n"
                "**Look for:** the fused accuracy, and how accurate each modality is *on its own inside* the joint "
                "model (the *head split*: the head's output computed from that modality's features only).",
                _DATA,
                Question(
                    "Inside the joint model, which modality will be accurate on its own?",
                    ("a", "b", "both about equally"),
                ),
                ("joint",),
                ("joint_curves",),
                "dominant_modality",
            ),
            Step(
                "Now each one alone",
                "Train the same network on **a alone** and on **b alone** (the other input is replaced by zeros). "
                "If the joint model used b as well as it could, b inside the joint model would match b alone.\n\n"
                "Inside the joint model, b is measured two ways: the head split, and a *linear probe* — a fresh "
                "logistic regression fitted on b's frozen features, i.e. how much class information b's encoder "
                "holds whether or not the head uses it.\n\n"
                "**Look for:** the gap between each modality alone and the same modality inside the joint model.",
                _DATA,
                Question(
                    "Inside the joint model, how will b compare with b trained alone?",
                    ("worse: the joint model under-trains b", "about the same", "better: a helps b learn"),
                ),
                ("joint", "alone_a", "alone_b"),
                ("alone_bars",),
                "joint_vs_alone",
            ),
        ),
        data_knobs=True,
    ),
    Lesson(
        2,
        "Why: the gradients",
        "The same joint run as lesson 1, seen from the inside. A modality's encoder only learns from the gradient "
        "of the *fused* loss. Once the fused prediction is right, that gradient is small for everyone — whether "
        "or not every modality has learned.",
        "imbalance",
        (
            Step(
                "Who gets the learning signal",
                "Each step, backpropagation sends a gradient into each encoder. The chart shows its size (L2 norm) "
                "per step, smoothed.\n\n**Look for:** whose gradient is larger in the first epochs, and what "
                "happens to both once the training loss has fallen.",
                (),
                Question("In the first epochs, whose encoder gets the larger gradient?", ("a", "b", "about equal")),
                ("joint",),
                ("grad_norms",),
                "early_gradients",
            ),
            Step(
                "Who is confident",
                "OGM-GE's diagnostic: a modality's *confidence score* s is the probability its own logits give the "
                "true class, summed over a training batch. The ratio s_a / s_b above 1 means a is the more "
                "confident modality: the fused loss is then mostly reduced through a, and b's gradient shrinks.\n\n"
                "**Look for:** which side of 1 the ratio lives on, and how far from it.",
                (),
                Question(
                    "Over training, the ratio s_a / s_b will be ...",
                    ("above 1: a leads", "about 1", "below 1: b leads"),
                ),
                ("joint",),
                ("score_ratio",),
                "score_ratio",
            ),
        ),
    ),
    Lesson(
        3,
        "Fixing it",
        "Balancing methods change training so the slower modality gets its share of the learning signal. Pick "
        "one, rerun lesson 1's joint model with it, and compare with the baseline (no balancing) and with b alone.",
        "imbalance",
        (
            Step(
                "Balance the training",
                "**OGM-GE** damps the gradient of the modality that is ahead. **PMR** adds a prototype loss that "
                "pulls the slower modality's features towards its class centres. **MLA** trains the modalities in "
                "turns through one shared head. **Modality dropout** zeros one modality on random batches, so the "
                "other must solve the task alone.\n\n"
                "**Look for:** b inside the joint model (head split and linear probe) moving towards b alone — "
                "and whether the fused accuracy pays for it.",
                ("method", "alpha", "drop_p"),
                Question(
                    "How much of b's gap to b-alone (linear probe) will the method close?",
                    ("most of it", "some of it", "little or none (or it widens)"),
                ),
                ("reference", "balanced", "alone_b"),
                ("balance_bars", "balance_curves"),
                "gap_closed",
            ),
        ),
    ),
    Lesson(
        4,
        "Negative co-learning",
        "Now **a** is the *target*: at deployment only a is available. **b** is a *helper*: easy and strong, but "
        "only there at training time. Does training with the helper make the target-only model better?",
        "colearning",
        (
            Step(
                "A helper that hurts",
                "Train on a and b together (p = 0: the helper is never dropped), then test with b replaced by zeros "
                "(target only). Compare with a network trained on a alone.\n\n"
                "**Look for:** the target-only accuracy of the model trained with the helper vs trained alone.",
                (),
                Question(
                    "Tested on a alone, the model trained with the helper will be ...",
                    ("better than a trained alone", "about the same", "worse than a trained alone"),
                ),
                ("helper_p0", "alone_a"),
                ("colearn_bars", "colearn_curves"),
                "helper_effect",
            ),
            Step(
                "Aggressive modality dropout",
                "Replace the helper's input by zeros on a share *p* of the training batches, so the network must "
                "often solve the task from a alone (Magal et al. 2025 recommend p ≥ 0.8). Slide p and rerun.\n\n"
                "**Look for:** the target-only accuracy moving from the p = 0 level towards — or past — a alone.",
                ("p",),
                Question(
                    "With the helper dropped on a share p of the batches, the target-only accuracy will ...",
                    (
                        "stay near the p = 0 level",
                        "recover part of the way",
                        "recover to about a alone",
                        "beat a alone",
                    ),
                ),
                ("helper_p0", "helper_p", "alone_a"),
                ("colearn_bars", "colearn_curves"),
                "dropout_recovery",
            ),
        ),
        data_knobs=True,
    ),
    Lesson(
        5,
        "Seeing it",
        "What the encoders learned, drawn: each dot is one validation sample, placed by the first two principal "
        "components of one encoder's features at the last epoch, and coloured by its class.",
        "imbalance",
        (
            Step(
                "Embeddings before and after balancing",
                "Left: the baseline joint run. Right: the run with the balancing method chosen below (the same run "
                "as lesson 3). Separated colours = the encoder tells the classes apart.\n\n"
                "**Look for:** b's panel in both runs.",
                ("method", "alpha", "drop_p"),
                Question(
                    "After balancing, b's classes will look ...",
                    ("more separated", "about the same", "less separated"),
                ),
                ("reference", "balanced"),
                ("embeddings",),
                "separation",
            ),
        ),
    ),
)


def get_lesson(number: int) -> Lesson:
    """Lesson ``number`` (1-based)."""
    return LESSONS[number - 1]


# Which controls each run role depends on (beyond the data knobs and the seed, which every run uses).
ROLE_CONTROLS = {"reference": ("method",), "balanced": ("method", "alpha", "drop_p"), "helper_p": ("p",)}


def lesson_controls(lesson: Lesson) -> tuple[str, ...]:
    """The controls a lesson's runs depend on, in the group's order: what its shared link must hold."""
    from mmviz.teach.controls import GROUP_CONTROLS, KNOB_NAMES

    used = {"preset", *KNOB_NAMES}
    for step in lesson.steps:
        for role in step.runs:
            used.update(ROLE_CONTROLS.get(role, ()))
    return tuple(n for n in GROUP_CONTROLS[lesson.group] if n in used)


def describe_settings(step: Step, values: Mapping[str, Any], seed: int) -> str:
    """One caption line with what the step's runs use, e.g. ``Balancing method: PMR · Strength alpha: 1 · Data: ...``
    (in focus mode it is the only place the link's settings show)."""
    from mmviz.teach.controls import CONTROLS

    parts = []
    for name in step.controls:
        c = CONTROLS[name]
        if name != "preset" and c.applies(values):
            shown = METHOD_SHORT.get(values[name], values[name]) if name == "method" else c.format(values[name])
            parts.append(f"{c.label}: {shown}")
    parts.append(f"Data: {knobs_from(values).describe()}")
    parts.append(f"seed {seed}")
    return " · ".join(parts)


def method_spec_args(values: Mapping[str, Any]) -> tuple[str, dict[str, Any], str]:
    """``(method, params, fusion)`` of the balanced run for the chosen ``method`` control."""
    method = values["method"]
    if method == "ogm_ge":
        return "ogm_ge", {"alpha": float(values["alpha"])}, "concat"
    if method == "pmr":
        return "pmr", {"alpha": float(values["alpha"])}, "concat"
    if method == "mla":
        return "mla", {}, "shared_head"  # MLA needs one head shared by the modalities
    return "amd", {"p": float(values["drop_p"])}, "concat"  # no target: any modality may be dropped, never both


def specs_for(step: Step, values: Mapping[str, Any], seed: int) -> list[RunSpec]:
    """The runs ``step`` needs for these control values and seed, in the step's order."""
    knobs = knobs_from(values)
    method, params, fusion = method_spec_args(values) if "method" in values else ("", {}, "concat")
    short = METHOD_SHORT.get(values.get("method", ""), "")
    builders = {
        "joint": lambda: make_spec("joint", "a + b (joint)", "baseline", knobs, seed),
        "reference": lambda: make_spec("reference", "baseline", "baseline", knobs, seed, fusion=fusion),
        "balanced": lambda: make_spec("balanced", short, method, knobs, seed, params, fusion),
        "alone_a": lambda: make_spec("alone_a", "a alone", "unimodal", knobs, seed, {"modality": "a"}),
        "alone_b": lambda: make_spec("alone_b", "b alone", "unimodal", knobs, seed, {"modality": "b"}),
        "helper_p0": lambda: make_spec("helper_p0", "with helper, p = 0", "amd", knobs, seed,
                                       {"target": "a", "p": 0.0}),
        "helper_p": lambda: make_spec("helper_p", f"with helper, p = {float(values.get('p', 0.8)):g}", "amd", knobs,
                                      seed, {"target": "a", "p": float(values.get("p", 0.8))}),
    }  # fmt: skip
    return [builders[role]() for role in step.runs]
