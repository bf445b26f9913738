"""Networks and the graph wrapper that owns preprocessing.

``ThoraxModel`` is what gets exported: it takes the wire image (uint8 [batch, 1, 256, 256]) and
returns sigmoid probabilities [batch, 14]. Between the two it centre-crops to 224, scales to
[0, 1], replicates the grey channel to three and applies ImageNet normalisation, so a backbone
with an ImageNet-style three-channel stem (the tiny CNN here, DenseNet-121 later) sees the input it
expects, and training and serving run the very same preprocessing.

Backbones are registered by name in ``BACKBONES``; each maps [batch, 3, 224, 224] float to
[batch, 14] logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from thorax_trainer.contract import (
    CROP_OFFSET,
    CROP_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LABELS,
    WIRE_SIZE,
)


class InGraphPreprocess(nn.Module):
    """uint8 [N, 1, 256, 256] → normalised float32 [N, 3, 224, 224]."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        end = CROP_OFFSET + CROP_SIZE
        crop = image[:, :, CROP_OFFSET:end, CROP_OFFSET:end]
        scaled = crop.to(torch.float32) / 255.0
        rgb = scaled.expand(-1, 3, -1, -1)
        return (rgb - self.mean) / self.std


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (stride 2) + BN + ReLU, then 3x3 conv + BN + ReLU: halves the resolution."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class TinyCnn(nn.Module):
    """Strided stem and four conv blocks (224 → 7), global average pooling, dropout, linear head."""

    def __init__(
        self,
        num_labels: int = len(LABELS),
        widths: tuple[int, ...] = (16, 32, 48, 64, 96),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        # A single strided conv as stem (224 → 112) keeps the cost of the widest maps low.
        blocks: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
            )
        ]
        in_channels = widths[0]
        for width in widths[1:]:
            blocks.append(_conv_block(in_channels, width))
            in_channels = width
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(in_channels, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.features(x)).flatten(1)
        logits: torch.Tensor = self.head(self.dropout(features))
        return logits


BACKBONES: dict[str, Callable[[], nn.Module]] = {
    "tiny-cnn": TinyCnn,
}


def build_backbone(name: str) -> nn.Module:
    try:
        factory = BACKBONES[name]
    except KeyError:
        known = ", ".join(sorted(BACKBONES))
        raise ValueError(f"unknown backbone {name!r} (known: {known})") from None
    return factory()


class ThoraxModel(nn.Module):
    """Wire image in, per-label logits (``logits``) or probabilities (``forward``) out."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.preprocess = InGraphPreprocess()
        self.backbone = backbone

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.backbone(self.preprocess(image))
        return out

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(image))


def build_model(backbone: str = "tiny-cnn") -> ThoraxModel:
    return ThoraxModel(build_backbone(backbone))


def example_input(batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A random wire batch, uint8 [batch, 1, 256, 256]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(
        0, 256, (batch, 1, WIRE_SIZE, WIRE_SIZE), dtype=torch.uint8, generator=generator
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
