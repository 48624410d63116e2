"""The names of the encoders and fusions, importable without torch (config choices and dashboard forms).

Each name is implemented in :mod:`models.encoders` / :mod:`models.fusion`, whose registration refuses a name that
is not declared here (and a test checks every declared name is implemented).
"""

ENCODER_NAMES: tuple[str, ...] = ("mlp", "cnn2d", "cnn1d", "resnet18")
FUSION_NAMES: tuple[str, ...] = ("concat", "sum", "shared_head", "film", "gated")
