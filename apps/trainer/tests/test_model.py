from __future__ import annotations

from pathlib import Path

import pytest
import torch

from thorax_trainer.contract import IMAGENET_MEAN, IMAGENET_STD
from thorax_trainer.model import (
    InGraphPreprocess,
    ThoraxModel,
    WeightsError,
    build_backbone,
    build_model,
    count_parameters,
    example_input,
    load_imagenet_weights,
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


def test_preprocess_average_pools_to_a_smaller_network_input() -> None:
    wire = torch.randint(0, 256, (2, 1, 256, 256), dtype=torch.uint8)
    full = InGraphPreprocess()(wire)
    small = InGraphPreprocess(56)(wire)
    assert small.shape == (2, 3, 56, 56)
    # Pooling commutes with the per-channel affine normalisation.
    torch.testing.assert_close(small, torch.nn.functional.avg_pool2d(full, 4))
    with pytest.raises(ValueError, match="divide 224"):
        InGraphPreprocess(100)


@pytest.mark.parametrize(
    ("backbone", "params"), [("densenet121", 6_968_206), ("resnet50", 23_536_718)]
)
def test_one_training_step_of_the_real_backbones_at_224(backbone: str, params: int) -> None:
    """One CPU step of DenseNet-121 / ResNet-50 at the CheXNet input size, head included."""
    torch.manual_seed(0)
    model = build_model(backbone)
    assert model.preprocess.network_size == 224
    assert count_parameters(model) == params  # ImageNet body + new 14-way head
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = example_input(2)
    targets = torch.tensor([[1.0] + [0.0] * 13, [0.0] * 13 + [1.0]])
    model.train()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model.logits(images), targets)
    optimizer.zero_grad()
    loss.backward()  # type: ignore[no-untyped-call]
    head = dict(model.backbone.named_parameters())
    head_name = "classifier.1.weight" if backbone == "densenet121" else "fc.1.weight"
    assert head[head_name].shape == (14, 1024 if backbone == "densenet121" else 2048)
    before = head[head_name].detach().clone()
    optimizer.step()
    assert not torch.equal(before, head[head_name])
    assert torch.isfinite(loss)


def _imagenet_state(backbone: str) -> dict[str, torch.Tensor]:
    import torchvision

    torch.manual_seed(1)
    factory = {
        "densenet121": torchvision.models.densenet121,
        "resnet50": torchvision.models.resnet50,
    }
    state: dict[str, torch.Tensor] = factory[backbone](weights=None).state_dict()
    return state


def test_imagenet_weights_load_from_a_local_file(tmp_path: Path) -> None:
    state = _imagenet_state("resnet50")
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = build_model("resnet50", imagenet_weights=path)
    loaded = model.backbone.state_dict()
    torch.testing.assert_close(loaded["conv1.weight"], state["conv1.weight"])
    torch.testing.assert_close(
        loaded["layer4.2.bn3.running_var"], state["layer4.2.bn3.running_var"]
    )
    assert loaded["fc.1.weight"].shape == (14, 2048)  # the head stays new


def test_old_style_densenet_keys_are_understood(tmp_path: Path) -> None:
    state = _imagenet_state("densenet121")
    old = {
        k.replace("denselayer1.norm1.", "denselayer1.norm.1.").replace(
            "denselayer1.conv2.", "denselayer1.conv.2."
        ): v
        for k, v in state.items()
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    path = tmp_path / "densenet121.pth"
    torch.save(old, path)
    backbone = build_backbone("densenet121")
    assert load_imagenet_weights(backbone, "densenet121", path) == len(
        [k for k in backbone.state_dict() if not k.startswith("classifier.")]
    )
    torch.testing.assert_close(
        backbone.state_dict()["features.denseblock1.denselayer1.conv2.weight"],
        state["features.denseblock1.denselayer1.conv2.weight"],
    )


def test_weights_problems_are_explained(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found; pass the path of a local densenet121"):
        build_model("densenet121", imagenet_weights=tmp_path / "absent.pth")
    wrong = tmp_path / "resnet.pth"
    torch.save(_imagenet_state("resnet50"), wrong)
    with pytest.raises(WeightsError, match="does not fit densenet121"):
        build_model("densenet121", imagenet_weights=wrong)
    with pytest.raises(WeightsError, match="no ImageNet initialisation"):
        build_model("tiny-cnn", imagenet_weights=wrong)
