"""Torch-only model zoo: per-modality encoders, fusion modules and the multimodal network.

This package imports nothing of ``mmviz`` but the leaf :mod:`mmviz.contracts` (the model contract it implements).
Importing it does not import torch (so :mod:`models.catalog` serves torch-free code); the exports below import
their modules on first access.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ENCODERS": "models.encoders",
    "create_encoder": "models.encoders",
    "default_encoder": "models.encoders",
    "FUSIONS": "models.fusion",
    "create_fusion": "models.fusion",
    "ModelOutput": "models.net",
    "MultimodalNet": "models.net",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import_module("models.av_resnet")  # registers the audio-visual ResNet-18 encoders too
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
