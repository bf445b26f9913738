from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from thorax_trainer.contract import (
    CAM_NAME,
    INPUT_NAME,
    KEY_AUROC_VALIDATION,
    KEY_CAM,
    KEY_INPUT,
    KEY_LABELS,
    KEY_OUTPUT,
    KEY_THRESHOLDS,
    LABELS,
    METADATA_KEYS,
    OUTPUT_NAME,
    ContractError,
    build_metadata,
    cam_spec,
    validate_metadata,
)
from thorax_trainer.export import attach_metadata, to_onnx, write_model
from thorax_trainer.model import CamExport, ThoraxModel, build_model, example_input
from thorax_trainer.verify import check_cam_consistency, check_graph_io, read_metadata, run_onnx


def _metadata() -> dict[str, str]:
    return build_metadata(
        name="thorax-test",
        version="2026.11.30-0",
        thresholds=[0.5] * 14,
        auroc_validation=dict.fromkeys(LABELS, 0.5),
        training={"dataset": {"name": "none", "kind": "test"}, "epochs": 0},
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """An untrained tiny model exported once for the whole module."""
    torch.manual_seed(0)
    model = build_model("tiny-cnn").eval()
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    proto = attach_metadata(to_onnx(model), _metadata())
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)
    return model, path


@pytest.fixture(scope="module")
def exported_with_cam(tmp_path_factory: pytest.TempPathFactory) -> tuple[ThoraxModel, Path]:
    """The same untrained tiny model through write_model (with the cam output, the default)."""
    torch.manual_seed(1)
    model = build_model("tiny-cnn").eval()
    # A non-zero bias, so that leaving it out of the map would show.
    head = model.backbone.head
    assert isinstance(head, torch.nn.Linear)
    with torch.no_grad():
        head.bias.copy_(torch.linspace(-2.0, 1.0, 14))
    path = tmp_path_factory.mktemp("export-cam") / "model.onnx"
    write_model(model, _metadata(), path)
    return model, path


def test_graph_has_the_contract_input_and_output(exported: tuple[torch.nn.Module, Path]) -> None:
    _, path = exported
    proto = onnx.load(path)
    check_graph_io(proto)
    (image,) = proto.graph.input
    assert image.name == INPUT_NAME
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == [
        "batch",
        1,
        256,
        256,
    ]
    (probabilities,) = proto.graph.output
    assert probabilities.name == OUTPUT_NAME
    assert probabilities.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_pytorch(exported: tuple[torch.nn.Module, Path], batch: int) -> None:
    model, path = exported
    images = example_input(batch, seed=batch)
    with torch.no_grad():
        expected = model(images).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = run_onnx(session, images.numpy(), batch)
    assert actual.shape == (batch, 14)
    assert actual.dtype == np.float32
    assert float(np.max(np.abs(actual - expected))) <= 1e-5


def test_metadata_in_the_file_is_complete(exported: tuple[torch.nn.Module, Path]) -> None:
    _, path = exported
    metadata = read_metadata(onnx.load(path))
    assert set(METADATA_KEYS) <= metadata.keys()
    validate_metadata(metadata)
    assert json.loads(metadata[KEY_LABELS]) == list(LABELS)
    assert metadata[KEY_INPUT] == (
        '{"name":"image","dtype":"uint8","layout":"NCHW","channels":1,'
        '"height":256,"width":256,"pixelFormat":"grey8"}'
    )
    assert metadata[KEY_OUTPUT] == '{"name":"probabilities","activation":"sigmoid"}'


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (KEY_THRESHOLDS, json.dumps([0.5] * 13), "14 numbers"),
        (KEY_THRESHOLDS, json.dumps([0.5] * 13 + [1.0]), "14 numbers"),
        (KEY_LABELS, json.dumps(list(reversed(LABELS))), "output order"),
        (KEY_AUROC_VALIDATION, json.dumps({"Atelectasis": 0.9}), "each label"),
        (KEY_INPUT, json.dumps({"name": "image"}), "thorax.input"),
        (KEY_OUTPUT, "not json", "valid JSON"),
    ],
)
def test_validate_metadata_rejects_broken_values(key: str, value: str, message: str) -> None:
    metadata = _metadata()
    metadata[key] = value
    with pytest.raises(ContractError, match=message):
        validate_metadata(metadata)


def test_validate_metadata_names_missing_keys() -> None:
    metadata = _metadata()
    del metadata["thorax.training"]
    with pytest.raises(ContractError, match=r"missing metadata keys: thorax\.training"):
        validate_metadata(metadata)


def test_undefined_auroc_is_written_as_null() -> None:
    metadata = build_metadata(
        name="n",
        version="v",
        thresholds=[0.5] * 14,
        auroc_validation={"Atelectasis": float("nan")},
        training={"epochs": 0},
    )
    values = json.loads(metadata[KEY_AUROC_VALIDATION])
    assert values["Atelectasis"] is None
    assert values["Hernia"] is None


# Class activation maps: the second output `cam`.


def test_the_export_has_a_cam_output_described_in_the_metadata(
    exported_with_cam: tuple[ThoraxModel, Path],
) -> None:
    _, path = exported_with_cam
    proto = onnx.load(path)
    check_graph_io(proto)
    assert [o.name for o in proto.graph.output] == [OUTPUT_NAME, CAM_NAME]
    cam = proto.graph.output[1]
    assert [d.dim_param or d.dim_value for d in cam.type.tensor_type.shape.dim] == [
        "batch",
        14,
        7,
        7,
    ]
    spec = json.loads(read_metadata(proto)[KEY_CAM])
    assert spec["shape"] == ["batch", 14, 7, 7]
    assert spec["region"] == {"top": 16, "left": 16, "height": 224, "width": 224}
    assert spec["units"] == "logit"
    assert len(spec["bias"]) == 14


@pytest.mark.parametrize("batch", [1, 4])
def test_cam_mean_plus_bias_is_the_logit(
    exported_with_cam: tuple[ThoraxModel, Path], batch: int
) -> None:
    model, path = exported_with_cam
    images = example_input(batch, seed=10 + batch)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities, cam = session.run(None, {INPUT_NAME: images.numpy()})
    assert cam.shape == (batch, 14, 7, 7)
    with torch.no_grad():
        expected_probabilities = model(images).numpy()
        logits = model.logits(images).numpy()
    # Same forward pass: the probabilities are the model's, within float rounding.
    assert float(np.max(np.abs(probabilities - expected_probabilities))) <= 1e-5
    bias = np.asarray(json.loads(read_metadata(onnx.load(path))[KEY_CAM])["bias"])
    assert float(np.max(np.abs(cam.mean(axis=(2, 3)) + bias - logits))) <= 1e-4
    # The probability of the predicted label follows from its map alone.
    top = probabilities.argmax(axis=1)
    for i, k in enumerate(top):
        logit = float(cam[i, k].mean() + bias[k])
        assert 1.0 / (1.0 + np.exp(-logit)) == pytest.approx(float(probabilities[i, k]), abs=1e-5)


@pytest.mark.parametrize("backbone", ["densenet121", "resnet50"])
def test_cam_of_the_real_backbones_explains_their_logits(backbone: str) -> None:
    """DenseNet-121 and ResNet-50 at 224 (PyTorch; their ONNX export is in the slow suite)."""
    torch.manual_seed(0)
    model = build_model(backbone).eval()
    exporter = CamExport(model).eval()
    images = example_input(1, seed=5)
    with torch.no_grad():
        probabilities, cam = exporter(images)
        logits = model.logits(images)
        reference = model(images)
    assert tuple(cam.shape) == (1, 14, 7, 7)
    assert float((probabilities - reference).abs().max()) <= 1e-6
    explained = cam.mean(dim=(2, 3)) + exporter.linear.bias.detach()
    assert float((explained - logits).abs().max()) <= 1e-4


def test_verify_refuses_a_cam_output_the_metadata_does_not_describe(
    exported_with_cam: tuple[ThoraxModel, Path], tmp_path: Path
) -> None:
    _, path = exported_with_cam
    proto = onnx.load(path)
    metadata = read_metadata(proto)
    del metadata[KEY_CAM]
    with pytest.raises(ContractError, match=r"needs the thorax\.outputs\.cam"):
        check_graph_io(attach_metadata(proto, metadata))
    spec = json.loads(read_metadata(onnx.load(path))[KEY_CAM])
    spec["shape"] = ["batch", 14, 8, 8]
    metadata[KEY_CAM] = json.dumps(spec)
    with pytest.raises(ContractError, match="declares"):
        check_graph_io(attach_metadata(proto, metadata))


def test_verify_refuses_maps_that_do_not_explain_the_probabilities(
    exported_with_cam: tuple[ThoraxModel, Path],
) -> None:
    _, path = exported_with_cam
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities, cam = session.run(None, {INPUT_NAME: example_input(2).numpy()})
    metadata = read_metadata(onnx.load(path))
    assert check_cam_consistency(probabilities, cam, metadata, 1e-5) <= 1e-5
    with pytest.raises(ContractError, match="does not explain"):
        check_cam_consistency(probabilities, cam + 0.5, metadata, 1e-4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shape": ["batch", 13, 7, 7]}, "shape"),
        ({"bias": [0.0] * 13}, "bias"),
        ({"region": {"top": 16, "left": 16, "height": 250, "width": 224}}, "inside"),
        ({"name": "maps"}, "naming"),
    ],
)
def test_validate_metadata_rejects_a_broken_cam_spec(
    change: dict[str, object], message: str
) -> None:
    metadata = _metadata()
    metadata[KEY_CAM] = json.dumps({**cam_spec(7, 7, [0.0] * 14), **change})
    with pytest.raises(ContractError, match=message):
        validate_metadata(metadata)
