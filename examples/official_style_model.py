"""A model and data written without mmviz in mind, the way the papers' official repositories write theirs.

``AVClassifier`` follows OGM-GE's: an ``audio_net`` and a ``visual_net`` producing feature maps, pooled inside
``forward``, a ``fusion_module`` whose linear ``fc_out`` reads the concatenated features, called with positional
tensors and returning ``(a, v, out)``. The encoders here are small CNNs so the examples run on a CPU in seconds;
swap in ``models.av_resnet.ResNet18Trunk`` for the papers' ResNet-18. ``ToyAudioVisual`` stands in for your
dataset: dict samples with a spectrogram-like ``audio`` ``(1, 32, 24)``, a ``visual`` clip ``(3, 2, 16, 16)`` and a
``label``. Both carry the class: the frames as a faint per-class colour, which pooling finds at once, the audio as
a per-class pattern under noise, learned more slowly; the frames dominate the fusion early (the imbalance the
examples show on the Live and Embeddings pages).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset


def small_cnn(in_channels: int) -> nn.Sequential:
    """Three conv blocks, 64 channels out, no pooling at the end (the model pools in its forward)."""
    layers, c = [], in_channels
    for out in (16, 32, 64):
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
        c = out
    return nn.Sequential(*layers)


class ConcatFusion(nn.Module):
    """``fc_out`` over the concatenated audio and visual features, as in OGM-GE's fusion_modules.py."""

    def __init__(self, input_dim: int = 128, output_dim: int = 6) -> None:
        super().__init__()
        self.fc_out = nn.Linear(input_dim, output_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        return x, y, self.fc_out(torch.cat((x, y), dim=1))


class AVClassifier(nn.Module):
    """Audio and visual encoders, pooled in ``forward``, and a concatenation fusion: ``forward(audio, visual)``."""

    def __init__(self, n_classes: int = 6) -> None:
        super().__init__()
        self.audio_net = small_cnn(1)
        self.visual_net = small_cnn(3)
        self.fusion_module = ConcatFusion(128, n_classes)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor):
        a = self.audio_net(audio)  # (B, 64, h, w)
        b, c, t, h, w = visual.shape
        v = self.visual_net(visual.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        v = v.view(b, t, *v.shape[1:]).permute(0, 2, 1, 3, 4)  # (B, 64, T, h', w')
        a = torch.flatten(F.adaptive_avg_pool2d(a, 1), 1)
        v = torch.flatten(F.adaptive_avg_pool3d(v, 1), 1)
        a, v, out = self.fusion_module(a, v)
        return a, v, out


class ToyAudioVisual(Dataset):
    """``n`` dict samples of ``classes`` classes (fixed by ``seed``)."""

    def __init__(self, n: int, seed: int, classes: int = 6) -> None:
        g = torch.Generator().manual_seed(seed)
        patterns = torch.randn(classes, 1, 32, 24, generator=torch.Generator().manual_seed(7))
        colours = torch.randn(classes, 3, 1, 1, 1, generator=torch.Generator().manual_seed(8))
        self.y = torch.randint(0, classes, (n,), generator=g)
        self.audio = patterns[self.y] + 0.8 * torch.randn(n, 1, 32, 24, generator=g)
        self.visual = 0.3 * colours[self.y] + torch.randn(n, 3, 2, 16, 16, generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"audio": self.audio[i], "visual": self.visual[i], "label": self.y[i]}
