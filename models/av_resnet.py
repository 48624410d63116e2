"""The audio and visual ResNet-18 encoders of the audio-visual imbalance papers (OGM-GE, PMR, MLA, ...).

Written from the architecture (He et al. 2016, ResNet-18: a 7x7/2 stem with 3x3/2 max-pooling, four stages of
two basic blocks with 64, 128, 256 and 512 channels), as the papers' official repositories configure it for
audio-visual classification, trained from scratch (no weights are downloaded):

- **audio**: a log spectrogram ``(B, F, T)`` is read as a one-channel image ``(B, 1, F, T)``; the last feature
  map is average-pooled to ``(B, 512)``.
- **visual**: a clip ``(B, 3, T, H, W)`` of ``T`` frames goes through the 2-D ResNet frame by frame (the frames
  folded into the batch); the ``(B, 512, T, h, w)`` feature maps are average-pooled over time and space to
  ``(B, 512)``, as the official ``AVClassifier`` does just before its fusion module.

Initialisation as the official backbone: convolutions Kaiming-normal (fan-out, ReLU gain); BatchNorm weights
drawn from N(1, 0.02) and biases zero. Parameter names follow torchvision's (``conv1``, ``bn1``, ``layer1`` ..
``layer4``), so an ImageNet ``state_dict`` the user has on disk loads into the visual trunk with
``load_state_dict(..., strict=False)``.
"""

from __future__ import annotations

import torch
from torch import nn

from models.encoders import register_encoder


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a (projected when the shape changes) identity shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Trunk(nn.Module):
    """ResNet-18 without its pooling and classifier: ``(N, C_in, H, W)`` -> feature map ``(N, 512, H/32, W/32)``."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, mean=1.0, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


@register_encoder(
    "resnet18_audio", ("sequence",), "The papers' audio ResNet-18: a log spectrogram as a 1-channel image (512-d)."
)
class AudioResNet18(nn.Module):
    """Audio encoder: ``(B, F, T)`` spectrogram -> ``(B, 512)`` (ResNet-18 trunk, global average pooling).

    ``in_shape``, ``out_dim`` and ``hidden`` are accepted for the encoder registry; the output is always 512-d.
    """

    def __init__(self, in_shape: tuple[int, ...] = (257, 188), out_dim: int = 512, hidden: int = 0) -> None:
        super().__init__()
        self.out_dim = 512
        self.net = ResNet18Trunk(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.net(x.unsqueeze(1))  # (B, 512, h, w)
        return fmap.mean(dim=(2, 3))


@register_encoder(
    "resnet18_visual",
    ("video",),
    "The papers' visual ResNet-18: frames through a 2-D ResNet, pooled over time (512-d).",
)
class VisualResNet18(nn.Module):
    """Visual encoder: ``(B, 3, T, H, W)`` frames -> ``(B, 512)`` (per-frame ResNet-18, mean over time and space)."""

    def __init__(self, in_shape: tuple[int, ...] = (3, 1, 224, 224), out_dim: int = 512, hidden: int = 0) -> None:
        super().__init__()
        self.out_dim = 512
        self.net = ResNet18Trunk(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        fmap = self.net(frames)  # (B*T, 512, h', w')
        return fmap.reshape(b, t, *fmap.shape[1:]).mean(dim=(1, 3, 4))
