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


# what the compatibility checks call model capabilities (the keys of mmviz.contracts.CAPABILITIES), not run needs
_MODEL_CAPABILITIES = frozenset({"fuse", "final_linear"}.union(*FUSION_CAPABILITIES.values()))


def fusion_capabilities(fusion: str) -> frozenset[str]:
    """The model-contract capabilities a ``MultimodalNet`` with ``fusion`` declares."""
    return frozenset({"fuse", "final_linear", *FUSION_CAPABILITIES[fusion]})


def fusions_with(requires: frozenset[str] | set[str]) -> list[str]:
    """Fusions whose network offers every model capability in ``requires`` (in registration order); run needs
    such as 'two_modalities' are not fusion matters and are ignored."""
    needs = {r for r in requires if r in _MODEL_CAPABILITIES}
    return [name for name in FUSION_NAMES if needs <= fusion_capabilities(name)]
