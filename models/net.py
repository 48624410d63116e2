"""The multimodal classifier: one encoder per modality and a fusion module, behind the model contract."""

from __future__ import annotations

import torch
from torch import nn

from mmviz.contracts import ModelOutput, MultimodalModel
from models.encoders import ENCODERS, create_encoder, default_encoder
from models.fusion import FUSIONS, create_fusion

__all__ = ["ModelOutput", "MultimodalNet"]


class MultimodalNet(MultimodalModel):
    """Encoders keyed by modality name plus a fusion head; implements :class:`mmviz.contracts.MultimodalModel`.

    Capabilities: always ``fuse`` and ``final_linear``; the fusion's own (``unimodal_logits``, ``head_split``,
    ``shared_head``; see :data:`models.fusion.FUSIONS`).

    Args:
        modalities: ``(name, kind, shape)`` per modality, in the fixed iteration order.
        num_classes: number of classes ``C``.
        encoders: encoder name per modality (``"auto"`` picks by kind).
        feature_dim: pooled feature size ``D`` of each encoder (ResNet18 always gives 512).
        hidden_dim: hidden width of the encoders.
        fusion: fusion name (see :data:`models.fusion.FUSIONS`).
    """

    def __init__(
        self,
        modalities: list[tuple[str, str, tuple[int, ...]]],
        num_classes: int,
        encoders: dict[str, str] | None = None,
        feature_dim: int = 128,
        hidden_dim: int = 256,
        fusion: str = "concat",
    ) -> None:
        super().__init__()
        encoders = encoders or {}
        self.modalities = tuple(m for m, _, _ in modalities)
        self.kinds = {m: k for m, k, _ in modalities}
        self.num_classes = num_classes
        self.encoder_names = {}
        enc = {}
        for name, kind, shape in modalities:
            choice = encoders.get(name, "auto")
            choice = default_encoder(kind) if choice == "auto" else choice
            if kind not in ENCODERS[choice][1]:
                raise ValueError(f"encoder {choice!r} does not take {kind!r} inputs")
            self.encoder_names[name] = choice
            enc[name] = create_encoder(choice, shape, feature_dim, hidden_dim)
        self.encoders = nn.ModuleDict(enc)
        dims = {m: self.encoders[m].out_dim for m in self.modalities}
        self.fusion = create_fusion(fusion, dims, num_classes)
        self.fusion_name = fusion
        self.capabilities = frozenset({"fuse", "final_linear", *self.fusion.capabilities})

    @property
    def has_unimodal_logits(self) -> bool:
        """Whether the fusion gives exact per-modality logits."""
        return bool(FUSIONS[self.fusion_name][0].has_unimodal)

    @property
    def feature_dims(self) -> dict[str, int]:
        """Each modality's feature size ``D_m``."""
        return dict(self.fusion.dims)

    def encoder(self, modality: str) -> nn.Module:
        """The encoder of ``modality``."""
        return self.encoders[modality]

    def encode(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-modality pooled features ``{m: (B, D_m)}``."""
        return {m: self.encoders[m](batch[m]) for m in self.modalities}

    def fuse(self, features: dict[str, torch.Tensor]) -> ModelOutput:
        """Apply the fusion head to precomputed features."""
        logits, uni = self.fusion(features)
        return ModelOutput(features=features, logits=logits, unimodal_logits=uni)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        return self.fuse(self.encode(batch))

    def head_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters of the fusion head."""
        return list(self.fusion.parameters())

    def head_weight(self, modality: str) -> torch.Tensor:
        """The block ``(C, D_m)`` of the linear head's weight that reads ``modality`` (capability ``head_split``)."""
        return self.fusion.head_weight(modality)

    def shared_head(self) -> nn.Linear:
        """The one head applied to every modality (capability ``shared_head``)."""
        return self.fusion.shared_head()

    def final_linear(self) -> nn.Linear:
        """The last linear layer producing the logits."""
        return self.fusion.final_linear()
