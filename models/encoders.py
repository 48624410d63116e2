"""Per-modality encoders: input ``(B, *shape)`` -> pooled feature ``(B, out_dim)``.

Registered by name in :data:`ENCODERS` with a one-line description and the modality kinds they accept.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

# name -> (factory(in_shape, out_dim, hidden) -> nn.Module, kinds, description)
ENCODERS: dict[str, tuple[Callable[..., nn.Module], tuple[str, ...], str]] = {}


def register_encoder(name: str, kinds: tuple[str, ...], description: str):
    """Register an encoder class under ``name`` (duplicate names are an error)."""

    def deco(cls):
        if name in ENCODERS:
            raise ValueError(f"encoder {name!r} is already registered")
        ENCODERS[name] = (cls, kinds, description)
        return cls

    return deco


def default_encoder(kind: str) -> str:
    """The encoder used for a modality kind when the config says 'auto'."""
    return {"vector": "mlp", "image": "cnn2d", "sequence": "cnn1d", "video": "resnet18_visual"}[kind]


def create_encoder(name: str, in_shape: tuple[int, ...], out_dim: int, hidden: int) -> nn.Module:
    """Build encoder ``name`` for inputs of per-sample shape ``in_shape``; its ``out_dim`` attribute is set."""
    cls = ENCODERS[name][0]
    enc = cls(tuple(in_shape), out_dim, hidden)
    return enc


@register_encoder("mlp", ("vector", "image", "sequence"), "Two-layer MLP on the flattened input (ReLU).")
class MLPEncoder(nn.Module):
    """``Flatten -> Linear(D, hidden) -> ReLU -> Linear(hidden, out) -> ReLU``."""

    def __init__(self, in_shape: tuple[int, ...], out_dim: int, hidden: int) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(in_shape), hidden), nn.ReLU(), nn.Linear(hidden, out_dim), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_encoder("cnn2d", ("image",), "Small 2-D CNN (3 conv blocks with BatchNorm, global average pooling).")
class CNN2dEncoder(nn.Module):
    """Three 3x3 conv blocks (32, 64, hidden channels) with BatchNorm and pooling, then a linear projection."""

    def __init__(self, in_shape: tuple[int, ...], out_dim: int, hidden: int) -> None:
        super().__init__()
        c = in_shape[0]
        mid = min(hidden, 128)
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(64, mid, 3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(mid, out_dim),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_encoder("cnn1d", ("sequence",), "1-D CNN over time for spectrogram/sequence features (channels x time).")
class CNN1dEncoder(nn.Module):
    """Two 1-D conv blocks over time with BatchNorm, global average pooling, then a linear projection."""

    def __init__(self, in_shape: tuple[int, ...], out_dim: int, hidden: int) -> None:
        super().__init__()
        c = in_shape[0]
        mid = min(hidden, 128)
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Conv1d(c, 64, 5, padding=2),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.Conv1d(64, mid, 3, padding=1),
            nn.BatchNorm1d(mid),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(mid, out_dim),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


@register_encoder("resnet18", ("image", "sequence"), "ResNet18-style encoder (512-d features) for GPU-scale inputs.")
class ResNet18Encoder(nn.Module):
    """ResNet18 (4 stages of 2 basic blocks, 64-512 channels), Kaiming init, global average pooling.

    Sequences ``(C, L)`` are treated as one-channel images ``(1, C, L)`` (as the audio ResNets of OGM-GE do).
    The output dimension is always 512 (``out_dim`` is ignored, as in the papers' backbones).
    """

    def __init__(self, in_shape: tuple[int, ...], out_dim: int, hidden: int) -> None:
        super().__init__()
        self.seq = len(in_shape) == 2
        cin = 1 if self.seq else in_shape[0]
        self.out_dim = 512
        self.stem = nn.Sequential(
            nn.Conv2d(cin, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        layers, c = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [_BasicBlock(c, cout, stride), _BasicBlock(cout, cout, 1)]
            c = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.seq:
            x = x.unsqueeze(1)
        return self.pool(self.layers(self.stem(x)))
