from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from thorax_trainer.contract import (
    INPUT_NAME,
    KEY_AUROC_VALIDATION,
    KEY_INPUT,
    KEY_LABELS,
    KEY_OUTPUT,
    KEY_THRESHOLDS,
    LABELS,
    METADATA_KEYS,
    OUTPUT_NAME,
    ContractError,
    build_metadata,
    validate_metadata,
)
from thorax_trainer.export import attach_metadata, to_onnx
from thorax_trainer.model import build_model, example_input
from thorax_trainer.verify import check_graph_io, read_metadata, run_onnx


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
