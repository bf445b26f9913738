from __future__ import annotations

import pytest
import torch

from thorax_trainer.contract import IMAGENET_MEAN, IMAGENET_STD
from thorax_trainer.model import (
    InGraphPreprocess,
    ThoraxModel,
    build_model,
    count_parameters,
    example_input,
)


def test_preprocess_crops_scales_replicates_and_normalises() -> None:
    # A known wire image: value = (row + 2 * column) mod 256, with markers around the crop edge.
    rows = torch.arange(256).view(256, 1)
    cols = torch.arange(256).view(1, 256)
    wire = ((rows + 2 * cols) % 256).to(torch.uint8)
    wire[16, 16] = 255  # first pixel inside the crop
    wire[15, 15] = 7  # just outside
    batch = wire.view(1, 1, 256, 256).repeat(2, 1, 1, 1)

    out = InGraphPreprocess()(batch)

    assert out.shape == (2, 3, 224, 224)
    assert out.dtype == torch.float32
    crop = wire[16:240, 16:240].to(torch.float64) / 255.0
    for channel, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)):
        expected = (crop - mean) / std
        torch.testing.assert_close(out[0, channel].to(torch.float64), expected, atol=1e-6, rtol=0)
    # Pixel (16, 16) lands at (0, 0): 255 → (1 - mean) / std.
    assert out[1, 0, 0, 0].item() == torch.tensor((1.0 - 0.485) / 0.229).float().item()
    # Black stays black in normalised units: 0 → -mean / std on every channel.
    zeros = InGraphPreprocess()(torch.zeros(1, 1, 256, 256, dtype=torch.uint8))
    for channel, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)):
        assert torch.allclose(zeros[0, channel], torch.tensor(-mean / std), atol=1e-6)


def test_model_maps_wire_batches_to_probabilities() -> None:
    model = build_model("tiny-cnn").eval()
    assert isinstance(model, ThoraxModel)
    assert 100_000 < count_parameters(model) < 500_000
    with torch.no_grad():
        probabilities = model(example_input(3))
        logits = model.logits(example_input(3))
    assert probabilities.shape == (3, 14)
    assert torch.all((probabilities > 0) & (probabilities < 1))
    torch.testing.assert_close(probabilities, torch.sigmoid(logits))


def test_unknown_backbone_is_refused() -> None:
    with pytest.raises(ValueError, match="tiny-cnn"):
        build_model("resnet-9000")
