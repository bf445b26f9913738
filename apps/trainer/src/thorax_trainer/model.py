"""Networks and the graph wrapper that owns preprocessing.

``ThoraxModel`` is what gets exported: it takes the wire image (uint8 [batch, 1, 256, 256]) and
returns sigmoid probabilities [batch, 14]. Between the two it centre-crops to 224, scales to
[0, 1], optionally average-pools to a smaller network input (tests and the CPU demo), replicates
the grey channel to three and applies ImageNet normalisation, so a backbone with an ImageNet-style
three-channel stem sees the input it expects, and training and serving run the very same
preprocessing.

Backbones are registered by name in ``BACKBONES``: ``densenet121`` (CheXNet, the default),
``resnet50`` (the seed's) and ``tiny-cnn`` (a small CNN for CPU tests and the committed demo
model). Each maps [batch, 3, size, size] float to [batch, 14] logits through a new head (dropout,
then a linear layer). The torchvision networks can start from ImageNet weights read from a local
state-dict file; nothing is ever downloaded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.nn import functional as F  # noqa: N812

from thorax_trainer.contract import (
    CROP_OFFSET,
    CROP_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LABELS,
    WIRE_SIZE,
    pooling_factor,
)

log = logging.getLogger(__name__)

DEFAULT_BACKBONE = "densenet121"
DEFAULT_DROPOUT = 0.2


class InGraphPreprocess(nn.Module):
    """uint8 [N, 1, 256, 256] → normalised float32 [N, 3, size, size] (size 224 by default).

    Float input holding values in [0, 255] is accepted too (augmented training batches); the
    exported graph only ever sees uint8.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, network_size: int = CROP_SIZE) -> None:
        super().__init__()
        self.network_size = network_size
        self.factor = pooling_factor(network_size)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        end = CROP_OFFSET + CROP_SIZE
        crop = image[:, :, CROP_OFFSET:end, CROP_OFFSET:end]
        scaled = crop.to(torch.float32) / 255.0
        if self.factor > 1:
            scaled = F.avg_pool2d(scaled, self.factor)
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
        dropout: float = DEFAULT_DROPOUT,
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


def _head(features: int, num_labels: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(features, num_labels))


def _densenet121(num_labels: int, dropout: float) -> nn.Module:
    net: nn.Module = torchvision.models.densenet121(weights=None)
    net.classifier = _head(1024, num_labels, dropout)  # DenseNet-121's feature width
    return net


def _resnet50(num_labels: int, dropout: float) -> nn.Module:
    net: nn.Module = torchvision.models.resnet50(weights=None)
    net.fc = _head(2048, num_labels, dropout)  # ResNet-50's feature width
    return net


def _tiny_cnn(num_labels: int, dropout: float) -> nn.Module:
    return TinyCnn(num_labels, dropout=dropout)


BACKBONES: dict[str, Callable[[int, float], nn.Module]] = {
    "densenet121": _densenet121,
    "resnet50": _resnet50,
    "tiny-cnn": _tiny_cnn,
}
# The ImageNet classifier layer each torchvision backbone replaces with the 14-way head.
HEAD_PREFIX: dict[str, str] = {"densenet121": "classifier.", "resnet50": "fc."}

# Old DenseNet state dicts name layers "norm.1", "conv.2"; torchvision's modules say "norm1".
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


_COUNTER = "num_batches_tracked"


class WeightsError(ValueError):
    """An ImageNet weights file is missing or does not fit the backbone."""


def build_backbone(name: str, dropout: float = DEFAULT_DROPOUT) -> nn.Module:
    try:
        factory = BACKBONES[name]
    except KeyError:
        known = ", ".join(sorted(BACKBONES))
        raise ValueError(f"unknown backbone {name!r} (known: {known})") from None
    return factory(len(LABELS), dropout)


def _normalise_keys(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = key.removeprefix("module.")
        match = _OLD_DENSENET_KEY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        out[key] = value
    return out


def load_imagenet_weights(backbone: nn.Module, name: str, path: Path) -> int:
    """Copy an ImageNet state dict (local file) into ``backbone``, all but its classifier.

    Accepts a plain state dict or one under a ``state_dict`` key, with or without a ``module.``
    prefix, and DenseNet's older ``norm.1`` key style. Returns the number of tensors loaded.
    Raises WeightsError when the file is absent or any non-head tensor is missing or misshapen.
    """
    if name not in HEAD_PREFIX:
        raise WeightsError(f"backbone {name!r} has no ImageNet initialisation")
    if not path.is_file():
        raise WeightsError(
            f"ImageNet weights file {path} not found; pass the path of a local {name} "
            "state dict (torchvision layout), or leave the option out to start from random "
            "initialisation"
        )
    loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise WeightsError(f"{path} does not hold a state dict")
    head = HEAD_PREFIX[name]
    source = {k: v for k, v in _normalise_keys(loaded).items() if not k.startswith(head)}
    target = {k: v for k, v in backbone.state_dict().items() if not k.startswith(head)}
    # Old files lack the batch-norm step counters; they are not weights, so they may be absent.
    missing = sorted(k for k in target.keys() - source.keys() if not k.endswith(_COUNTER))
    misshapen = sorted(
        k for k in target.keys() & source.keys() if target[k].shape != source[k].shape
    )
    if missing or misshapen:
        shown = ", ".join((missing + misshapen)[:3])
        raise WeightsError(
            f"{path} does not fit {name}: {len(missing)} tensors missing, "
            f"{len(misshapen)} of another shape (e.g. {shown})"
        )
    backbone.load_state_dict({k: source[k] for k in target if k in source}, strict=False)
    return len(target)


class ThoraxModel(nn.Module):
    """Wire image in, per-label logits (``logits``) or probabilities (``forward``) out."""

    def __init__(self, backbone: nn.Module, network_size: int = CROP_SIZE) -> None:
        super().__init__()
        self.preprocess = InGraphPreprocess(network_size)
        self.backbone = backbone

    def logits(
        self, image: torch.Tensor, memory_format: torch.memory_format | None = None
    ) -> torch.Tensor:
        x = self.preprocess(image)
        if memory_format is not None:
            x = x.contiguous(memory_format=memory_format)
        out: torch.Tensor = self.backbone(x)
        return out

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(image))


def _densenet_maps(net: torchvision.models.DenseNet, x: torch.Tensor) -> torch.Tensor:
    # torchvision's DenseNet forward: features, ReLU, global average pool, classifier.
    maps: torch.Tensor = F.relu(net.features(x))
    return maps


def _resnet_maps(net: torchvision.models.ResNet, x: torch.Tensor) -> torch.Tensor:
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    maps: torch.Tensor = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return maps


def _tiny_maps(net: TinyCnn, x: torch.Tensor) -> torch.Tensor:
    maps: torch.Tensor = net.features(x)
    return maps


def _classifier(net: nn.Module) -> nn.Linear:
    """The 14-way linear layer after global average pooling (dropout is the identity in eval)."""
    for name in ("head", "classifier", "fc"):
        head = getattr(net, name, None)
        if isinstance(head, nn.Linear):
            return head
        if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
            return head[-1]
    raise ValueError(f"{type(net).__name__} has no linear head after global pooling")


def cam_parts(
    backbone: nn.Module,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Linear]:
    """The last feature maps of a GAP + linear backbone, and its linear head.

    For these heads ``logit_k = mean_hw(sum_c W_kc F_c(h, w)) + b_k``, so the class activation map
    (Zhou et al. 2016, as CheXNet used it) ``CAM_k(h, w) = sum_c W_kc F_c(h, w)`` costs one
    1x1 projection of maps the forward pass computes anyway.
    """
    extract: Callable[[torch.Tensor], torch.Tensor]
    if isinstance(backbone, TinyCnn):
        tiny = backbone
        extract = lambda x: _tiny_maps(tiny, x)  # noqa: E731
    elif isinstance(backbone, torchvision.models.DenseNet):
        densenet = backbone
        extract = lambda x: _densenet_maps(densenet, x)  # noqa: E731
    elif isinstance(backbone, torchvision.models.ResNet):
        resnet = backbone
        extract = lambda x: _resnet_maps(resnet, x)  # noqa: E731
    else:
        raise ValueError(f"no class activation maps for {type(backbone).__name__}")
    return extract, _classifier(backbone)


class CamExport(nn.Module):
    """What the exporter traces: wire image in, (probabilities [N, 14], cam [N, 14, h, w]) out.

    The probabilities come from the same feature maps as the maps (one pass): global average
    pooling, the linear head, the sigmoid, exactly ``ThoraxModel.forward`` in eval mode. ``cam``
    is in logit units without the bias: its mean over (h, w) plus the label's bias is the logit.
    """

    def __init__(self, model: ThoraxModel) -> None:
        super().__init__()
        self.model = model
        self._maps, self.linear = cam_parts(model.backbone)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self._maps(self.model.preprocess(image))
        logits = self.linear(maps.mean(dim=(2, 3)))
        cam = torch.einsum("nchw,kc->nkhw", maps, self.linear.weight)
        return torch.sigmoid(logits), cam


class LogitsView(nn.Module):
    """``forward`` = ``model.logits``: the module that training wraps in DDP or torch.compile."""

    def __init__(self, model: ThoraxModel, memory_format: torch.memory_format | None) -> None:
        super().__init__()
        self.model = model
        self.memory_format = memory_format

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.logits(image, self.memory_format)


def build_model(
    backbone: str = DEFAULT_BACKBONE,
    *,
    network_size: int = CROP_SIZE,
    dropout: float = DEFAULT_DROPOUT,
    imagenet_weights: Path | None = None,
) -> ThoraxModel:
    net = build_backbone(backbone, dropout)
    if imagenet_weights is not None:
        count = load_imagenet_weights(net, backbone, imagenet_weights)
        log.info(
            "%s: %d tensors initialised from ImageNet weights %s", backbone, count, imagenet_weights
        )
    return ThoraxModel(net, network_size)


def example_input(batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A random wire batch, uint8 [batch, 1, 256, 256]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(
        0, 256, (batch, 1, WIRE_SIZE, WIRE_SIZE), dtype=torch.uint8, generator=generator
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
