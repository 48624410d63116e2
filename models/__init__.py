"""Torch-only model zoo: per-modality encoders, fusion modules and the multimodal network.

This package imports nothing of ``mmviz`` but the leaf :mod:`mmviz.contracts` (the model contract it implements).
"""

from models import av_resnet  # noqa: F401  (registers the audio-visual ResNet-18 encoders)
from models.encoders import ENCODERS, create_encoder, default_encoder
from models.fusion import FUSIONS, create_fusion
from models.net import ModelOutput, MultimodalNet

__all__ = ["ENCODERS", "FUSIONS", "ModelOutput", "MultimodalNet", "create_encoder", "create_fusion", "default_encoder"]
