"""The names of the encoders and fusions, importable without torch (config choices and dashboard forms).

Each name is implemented in :mod:`models.encoders` (and :mod:`models.av_resnet`) / :mod:`models.fusion`, whose registration refuses a name that
is not declared here (and a test checks every declared name is implemented).
"""

ENCODER_NAMES: tuple[str, ...] = ("mlp", "cnn2d", "cnn1d", "resnet18", "resnet18_audio", "resnet18_visual")
FUSION_NAMES: tuple[str, ...] = ("concat", "sum", "shared_head", "film", "gated")
# model-contract capabilities each fusion gives (mmviz.contracts.CAPABILITIES); a MultimodalNet adds "fuse" and
# "final_linear" whatever its fusion
FUSION_CAPABILITIES: dict[str, frozenset[str]] = {
    "concat": frozenset({"unimodal_logits", "head_split"}),
    "sum": frozenset({"unimodal_logits", "head_split"}),
    "shared_head": frozenset({"unimodal_logits", "head_split", "shared_head"}),
    "film": frozenset(),
    "gated": frozenset(),
}
