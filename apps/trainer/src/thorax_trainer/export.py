"""ONNX export in the Thorax model contract.

The graph is exported with the ``torch.export``-based ONNX exporter (``dynamo=True``, the default
since PyTorch 2.9, which needs onnxscript) at opset 18 with a dynamic ``batch`` axis, then the
contract metadata is written into ``metadata_props`` and the model is checked with
``onnx.checker`` before it is saved.

Beside ``probabilities`` the graph has a second output, ``cam``: the class activation maps
[batch, 14, h, w] of the same forward pass (``model.CamExport``), described by the
``thorax.outputs.cam`` metadata key. ``cam=False`` exports the probabilities alone (the format of
older files, which the serving side still loads).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from thorax_trainer import __version__
from thorax_trainer.contract import (
    BATCH_AXIS,
    CAM_NAME,
    INPUT_NAME,
    KEY_CAM,
    KEY_NAME,
    KEY_SCHEMA,
    KEY_VERSION,
    LABELS,
    OUTPUT_NAME,
    build_metadata,
    cam_spec,
    validate_metadata,
)
from thorax_trainer.model import CamExport, ThoraxModel, example_input

OPSET = 18
# metadata_props values that are plain strings; all others hold JSON.
PLAIN_KEYS = frozenset({KEY_SCHEMA, KEY_NAME, KEY_VERSION})


class _QuietRegistration(logging.Filter):
    """Drop the exporter's notes about optional torchvision ops; they do not concern us."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "torchvision is not installed" not in record.getMessage()


def to_onnx(model: nn.Module, opset: int = OPSET, *, cam: bool = False) -> onnx.ModelProto:
    """Trace ``model`` (uint8 [batch, 1, 256, 256] → [batch, 14]) into an ONNX model.

    ``cam``: ``model`` is a ThoraxModel and the graph gets the second output ``cam`` as well.
    """
    model.eval()
    output_names = [OUTPUT_NAME]
    if cam:
        if not isinstance(model, ThoraxModel):
            raise TypeError("class activation maps need a ThoraxModel")
        model = CamExport(model).eval()
        output_names.append(CAM_NAME)
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    quiet = _QuietRegistration()
    registration_log.addFilter(quiet)
    try:
        program = torch.onnx.export(
            model,
            (example_input(2),),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=output_names,
            dynamic_shapes={INPUT_NAME: {0: torch.export.Dim(BATCH_AXIS)}},
            opset_version=opset,
            optimize=True,
            verbose=False,
            external_data=False,
        )
    finally:
        registration_log.removeFilter(quiet)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    proto: onnx.ModelProto = program.model_proto
    return proto


def attach_metadata(
    proto: onnx.ModelProto, metadata: Mapping[str, str], doc: str = ""
) -> onnx.ModelProto:
    """Replace ``metadata_props`` with ``metadata`` and set producer fields."""
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, dict(metadata))
    proto.producer_name = "thorax_trainer"
    proto.producer_version = __version__
    if doc:
        proto.doc_string = doc
    return proto


def training_summary(checkpoint: Mapping[str, Any], opset: int = OPSET) -> dict[str, Any]:
    """The ``thorax.training`` JSON: data, split, recipe, results, software and dates."""
    config = checkpoint["config"]
    dataset = dict(checkpoint["dataset"])
    split = dataset.pop("split")
    validation = checkpoint["validation"]
    test = checkpoint.get("test") or {}
    optimizer = (
        "Adam (betas 0.9, 0.999)"
        if config["optimizer"] == "adam"
        else f"SGD (Nesterov momentum {config['momentum']})"
    )
    return {
        "dataset": {
            **dataset,
            "split": split["method"],
            "splitFractions": config["fractions"] if split["method"] == "random-patient" else None,
            "validationFraction": (
                config["validation_fraction"] if split["method"] == "official" else None
            ),
            "images": split["images"],
            "patients": split["patients"],
            "positives": split["positives"],
            # Images of the CSV left out of every split, by reason (empty: none).
            "excluded": dict(split.get("excluded") or {}),
        },
        "backbone": checkpoint["backbone"],
        "networkInput": config["network_size"],
        "initialisation": checkpoint.get("initialisation", "random"),
        "parameters": checkpoint["parameters"],
        "epochs": config["epochs"],
        "epochsRun": checkpoint.get("epochsRun"),
        "bestEpoch": checkpoint["epoch"],
        "batchSize": config["batch_size"],
        "optimizer": optimizer,
        "learningRate": config["learning_rate"],
        "weightDecay": config["weight_decay"],
        "schedule": (
            (
                f"linear warmup over {config['warmup_epochs']} epoch(s) from "
                f"{config['warmup_start_factor']} x lr, then "
                if config["warmup_epochs"] > 0
                else "no warmup, "
            )
            + "ReduceLROnPlateau on validation loss "
            f"(factor {config['plateau_factor']}, patience {config['plateau_patience']})"
        ),
        "earlyStopping": config["early_stopping"],
        "loss": (
            "binary cross-entropy on logits"
            + (", balanced positive weights" if config["pos_weight"] == "balanced" else "")
        ),
        "augmentation": {
            "horizontalFlipP": config["flip_p"],
            "brightnessP": config["brightness_p"],
            "brightnessMax": config["brightness_max"],
            "rotationDegrees": config["rotation_degrees"],
        },
        "seed": config["seed"],
        "selection": "epoch with the highest validation mean AUROC",
        "validationMeanAuroc": _rounded(validation["meanAuroc"]),
        "testMeanAuroc": _rounded(test.get("meanAuroc")),
        "thresholdRule": validation["thresholdRule"],
        "device": checkpoint.get("device", {"type": "cpu"}),
        "trainImagesPerSecond": checkpoint.get("trainImagesPerSecond"),
        "torch": checkpoint["torch"],
        "onnxOpset": opset,
        "exporter": "torch.onnx dynamo",
        "trainedAt": checkpoint.get("trainedAt"),
        "exportedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "trainer": f"thorax_trainer {__version__}",
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def metadata_for(checkpoint: Mapping[str, Any], name: str, version: str) -> dict[str, str]:
    if list(checkpoint["labels"]) != list(LABELS):
        raise ValueError("checkpoint labels differ from the contract's label order")
    validation = checkpoint.get("validation")
    if not validation:
        raise ValueError("checkpoint has no validation results; export the best.pt of a run")
    test = checkpoint.get("test")
    return build_metadata(
        name=name,
        version=version,
        thresholds=validation["thresholds"],
        auroc_validation=validation["auroc"],
        auroc_test=test["auroc"] if test and test.get("images") else None,
        training=training_summary(checkpoint),
        network_size=int(checkpoint["config"]["network_size"]),
    )


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def with_cam_metadata(model: ThoraxModel, metadata: Mapping[str, str]) -> dict[str, str]:
    """``metadata`` plus ``thorax.outputs.cam``: map size (from a trace) and the head's bias."""
    exporter = CamExport(model).eval()
    with torch.no_grad():
        _, maps = exporter(example_input(1))
    spec = cam_spec(int(maps.shape[2]), int(maps.shape[3]), exporter.linear.bias.detach().tolist())
    out = {**metadata, KEY_CAM: json.dumps(spec, separators=(",", ":"), allow_nan=False)}
    validate_metadata(out)
    return out


def write_model(
    model: nn.Module,
    metadata: Mapping[str, str],
    out_path: Path,
    doc: str = "",
    *,
    cam: bool = True,
) -> onnx.ModelProto:
    """Export, attach metadata, check and save ``out_path`` plus a ``model.json`` sidecar.

    ``cam`` (the default for a ThoraxModel): the graph has the ``cam`` output and the metadata
    says what it holds.
    """
    cam = cam and isinstance(model, ThoraxModel)
    if cam:
        assert isinstance(model, ThoraxModel)
        metadata = with_cam_metadata(model, metadata)
    proto = attach_metadata(to_onnx(model, cam=cam), metadata, doc)
    save_with_sidecar(proto, metadata, out_path)
    return proto


def sidecar_path(model_path: Path) -> Path:
    """``model.onnx`` → ``model.json``; ``model.int8.onnx`` → ``model.int8.json``."""
    return model_path.with_name(model_path.name.removesuffix(".onnx") + ".json")


def save_with_sidecar(proto: onnx.ModelProto, metadata: Mapping[str, str], out_path: Path) -> None:
    """Check and save a model, and write its human-readable sidecar beside it."""
    onnx.checker.check_model(proto, full_check=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, out_path)
    sidecar = {
        "file": out_path.name,
        "bytes": out_path.stat().st_size,
        "sha256": sha256(out_path),
        "note": "Copy for humans; the serving side reads metadata_props from the ONNX file.",
        "metadata": {
            key: value if key in PLAIN_KEYS else json.loads(value)
            for key, value in metadata.items()
        },
    }
    sidecar_path(out_path).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
