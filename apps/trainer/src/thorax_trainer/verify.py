"""Check an exported model the way the serving side will use it.

1. ``onnx.checker`` passes and the graph has exactly the contract's input and output (plus the
   optional ``cam`` output, which ``thorax.outputs.cam`` must then describe).
2. Every ``metadata_props`` key of the contract is present and well formed; with ``cam``, the
   maps agree with the probabilities: sigmoid(mean over (h, w) + bias) = probability.
3. ONNX Runtime (CPU) loads it and, on held-back images (the test split, never seen in training
   or threshold selection, decoded from the PNGs rather than read from the training cache),
   agrees with the PyTorch checkpoint within ``tolerance`` (max absolute difference of
   probabilities, default 1e-4), at batch sizes 1 and 16. The held-back AUROC it reports is on
   up to 256 of those images: a sanity figure, not the report's test AUROC.
4. The thresholds in the file are the checkpoint's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from thorax_trainer.contract import (
    BATCH_AXIS,
    CAM_NAME,
    INPUT_NAME,
    KEY_CAM,
    KEY_THRESHOLDS,
    LABELS,
    OUTPUT_NAME,
    WIRE_SIZE,
    ContractError,
    validate_metadata,
)
from thorax_trainer.loader import WireImageDataset
from thorax_trainer.metrics import mean_auroc, per_label_auroc
from thorax_trainer.model import example_input
from thorax_trainer.train import load_checkpoint, model_from_checkpoint, predict, split_for

DEFAULT_TOLERANCE = 1e-4
BATCH_SIZES = (1, 16)


@dataclass
class VerifyReport:
    model: str
    images: int
    max_abs_diff: float | None
    tolerance: float
    metadata: dict[str, str]
    held_back_auroc: dict[str, float | None] = field(default_factory=dict)
    held_back_mean_auroc: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "images": self.images,
            "maxAbsDiff": self.max_abs_diff,
            "tolerance": self.tolerance,
            "heldBackMeanAuroc": self.held_back_mean_auroc,
            "heldBackAuroc": self.held_back_auroc,
        }


def _dims(value_info: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check_graph_io(proto: onnx.ModelProto) -> None:
    """The graph must take uint8 ``image`` [batch,1,256,256] and give float ``probabilities``.

    A second output ``cam`` (float [batch, 14, h, w]) is allowed when ``thorax.outputs.cam``
    describes it with the same map size; the metadata key without the output is an error too.
    """
    inputs = [
        i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}
    ]
    outputs = list(proto.graph.output)
    names = [o.name for o in outputs]
    if [i.name for i in inputs] != [INPUT_NAME] or names not in (
        [OUTPUT_NAME],
        [OUTPUT_NAME, CAM_NAME],
    ):
        raise ContractError(
            f"graph must have input {INPUT_NAME!r} and output {OUTPUT_NAME!r} "
            f"(optionally then {CAM_NAME!r}), got "
            f"{[i.name for i in inputs]} → {names}"
        )
    _check_cam_output(outputs[1] if len(outputs) > 1 else None, read_metadata(proto))
    image, probabilities = inputs[0], outputs[0]
    if image.type.tensor_type.elem_type != onnx.TensorProto.UINT8:
        raise ContractError(f"{INPUT_NAME} must be uint8")
    if _dims(image) != [BATCH_AXIS, 1, WIRE_SIZE, WIRE_SIZE]:
        raise ContractError(f"{INPUT_NAME} must be [{BATCH_AXIS}, 1, 256, 256], got {_dims(image)}")
    if probabilities.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ContractError(f"{OUTPUT_NAME} must be float32")
    if _dims(probabilities) != [BATCH_AXIS, len(LABELS)]:
        raise ContractError(
            f"{OUTPUT_NAME} must be [{BATCH_AXIS}, {len(LABELS)}], got {_dims(probabilities)}"
        )


def _check_cam_output(cam: onnx.ValueInfoProto | None, metadata: dict[str, str]) -> None:
    if cam is None:
        if KEY_CAM in metadata:
            raise ContractError(f"{KEY_CAM} describes an output {CAM_NAME!r} the graph lacks")
        return
    if KEY_CAM not in metadata:
        raise ContractError(f"output {CAM_NAME!r} needs the {KEY_CAM} metadata key")
    if cam.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ContractError(f"{CAM_NAME} must be float32")
    declared = json.loads(metadata[KEY_CAM]).get("shape")
    if _dims(cam) != declared:
        raise ContractError(f"{CAM_NAME} is {_dims(cam)} but {KEY_CAM} declares {declared}")


def check_cam_consistency(
    probabilities: npt.NDArray[np.float32],
    cam: npt.NDArray[np.float32],
    metadata: dict[str, str],
    tolerance: float,
) -> float:
    """Largest |sigmoid(mean_hw(cam) + bias) - probability|; ContractError above ``tolerance``."""
    bias = np.asarray(json.loads(metadata[KEY_CAM])["bias"], dtype=np.float64)
    logits = cam.astype(np.float64).mean(axis=(2, 3)) + bias
    difference = float(np.max(np.abs(1.0 / (1.0 + np.exp(-logits)) - probabilities)))
    if not difference <= tolerance:
        raise ContractError(
            f"{CAM_NAME} does not explain the probabilities: sigmoid(mean + bias) differs by "
            f"{difference:.3g} > {tolerance:g}"
        )
    return difference


def read_metadata(proto: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in proto.metadata_props}


def run_onnx(
    session: ort.InferenceSession, images: npt.NDArray[np.uint8], batch_size: int
) -> npt.NDArray[np.float32]:
    outputs = [
        session.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + batch_size]})[0]
        for i in range(0, images.shape[0], batch_size)
    ]
    return np.concatenate(outputs).astype(np.float32)


def verify(
    model_path: Path,
    checkpoint_path: Path | None = None,
    data: Path | None = None,
    *,
    images: int = 64,
    tolerance: float = DEFAULT_TOLERANCE,
) -> VerifyReport:
    """Run all checks; raise ContractError on the first failure."""
    proto = onnx.load(model_path)
    onnx.checker.check_model(proto, full_check=True)
    check_graph_io(proto)
    metadata = read_metadata(proto)
    validate_metadata(metadata)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])

    if KEY_CAM in metadata:
        sample = example_input(3, seed=1).numpy()
        probabilities, cam = session.run([OUTPUT_NAME, CAM_NAME], {INPUT_NAME: sample})
        check_cam_consistency(probabilities, cam, metadata, tolerance)

    if checkpoint_path is None:
        # No reference to compare with: check that the runtime produces probabilities.
        sample = example_input(3).numpy()
        out = run_onnx(session, sample, 2)
        if out.shape != (3, len(LABELS)) or not np.all((out >= 0) & (out <= 1)):
            raise ContractError("runtime output is not [n, 14] probabilities")
        return VerifyReport(str(model_path), 3, None, tolerance, metadata)

    checkpoint = load_checkpoint(checkpoint_path)
    expected = [round(float(t), 6) for t in checkpoint["validation"]["thresholds"]]
    if json.loads(metadata[KEY_THRESHOLDS]) != expected:
        raise ContractError(f"{KEY_THRESHOLDS} differ from the checkpoint's thresholds")
    model = model_from_checkpoint(checkpoint)
    config = checkpoint["config"]
    root = Path(data) if data is not None else Path(config["data"])
    split = split_for({**config, "data": str(root)})
    held_back = (split.test or split.validation)[: max(images, 256)]
    dataset = WireImageDataset(root, held_back)
    all_images = dataset.images()
    batch = all_images[:images]

    reference = predict(model, batch)
    differences = [
        float(np.max(np.abs(run_onnx(session, batch.numpy(), size) - reference)))
        for size in BATCH_SIZES
    ]
    max_abs_diff = max(differences)
    if not max_abs_diff <= tolerance:
        raise ContractError(
            f"ONNX Runtime and PyTorch differ by {max_abs_diff:.3g} > tolerance {tolerance:g}"
        )
    probabilities = run_onnx(session, all_images.numpy(), 32)
    auroc = per_label_auroc(dataset.targets.numpy(), probabilities, LABELS)
    return VerifyReport(
        model=str(model_path),
        images=int(batch.shape[0]),
        max_abs_diff=max_abs_diff,
        tolerance=tolerance,
        metadata=metadata,
        held_back_auroc=auroc,
        held_back_mean_auroc=mean_auroc(auroc),
    )
