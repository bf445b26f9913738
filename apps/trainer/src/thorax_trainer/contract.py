"""The Thorax model contract: what an exported ONNX file promises to the serving side.

Everything the inference service relies on is defined here once: tensor names, the wire image
format, the in-graph preprocessing constants and the ``metadata_props`` keys. The exporter writes
these values and the verifier checks them, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

SCHEMA: Final = "thorax.model.v1"

# The 14 ChestX-ray14 labels as NIH spells them, in model output order.
LABELS: Final[tuple[str, ...]] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NO_FINDING: Final = "No Finding"

# Wire image: 8-bit grayscale, shorter side resized to WIRE_SIZE, centre-cropped square.
INPUT_NAME: Final = "image"
OUTPUT_NAME: Final = "probabilities"
# Optional second output: class activation maps [batch, 14, h, w] (KEY_CAM describes them).
CAM_NAME: Final = "cam"
BATCH_AXIS: Final = "batch"
WIRE_SIZE: Final = 256

# In-graph preprocessing: centre crop, scale to [0, 1], replicate grey to RGB, ImageNet normalise.
CROP_SIZE: Final = 224
CROP_OFFSET: Final = (WIRE_SIZE - CROP_SIZE) // 2
IMAGENET_MEAN: Final[tuple[float, float, float]] = (0.485, 0.456, 0.406)
IMAGENET_STD: Final[tuple[float, float, float]] = (0.229, 0.224, 0.225)

# Wire recipe (docs/imaging.md): its name, as the preprocess service puts it in every
# PreprocessedImage (libs/imaging WIRE_PREPROCESSING), and its resampler. v2: libvips Lanczos-3
# (sharp on the serving side, pyvips here); v1 was a hand-written float64 Lanczos-3.
WIRE_RECIPE: Final = "thorax.wire.v2"
WIRE_RESAMPLING: Final = "libvips-lanczos3"

KEY_SCHEMA: Final = "thorax.schema"
KEY_NAME: Final = "thorax.model.name"
KEY_VERSION: Final = "thorax.model.version"
KEY_LABELS: Final = "thorax.labels"
KEY_THRESHOLDS: Final = "thorax.thresholds"
KEY_INPUT: Final = "thorax.input"
KEY_OUTPUT: Final = "thorax.output"
KEY_PREPROCESSING: Final = "thorax.preprocessing"
KEY_TRAINING: Final = "thorax.training"
KEY_AUROC_VALIDATION: Final = "thorax.auroc.validation"
# Additive keys (not required by thorax.model.v1; validated when present).
KEY_AUROC_TEST: Final = "thorax.auroc.test"
KEY_QUANTIZATION: Final = "thorax.quantization"
KEY_CAM: Final = "thorax.outputs.cam"

METADATA_KEYS: Final[tuple[str, ...]] = (
    KEY_SCHEMA,
    KEY_NAME,
    KEY_VERSION,
    KEY_LABELS,
    KEY_THRESHOLDS,
    KEY_INPUT,
    KEY_OUTPUT,
    KEY_PREPROCESSING,
    KEY_TRAINING,
    KEY_AUROC_VALIDATION,
)

INPUT_SPEC: Final[Mapping[str, Any]] = {
    "name": INPUT_NAME,
    "dtype": "uint8",
    "layout": "NCHW",
    "channels": 1,
    "height": WIRE_SIZE,
    "width": WIRE_SIZE,
    "pixelFormat": "grey8",
}
OUTPUT_SPEC: Final[Mapping[str, Any]] = {"name": OUTPUT_NAME, "activation": "sigmoid"}


def preprocessing_spec(network_size: int = CROP_SIZE) -> dict[str, Any]:
    """Describe the wire format and the steps the graph applies to it, in order.

    ``network_size`` below the crop size adds an in-graph average-pooling step (the crop size must
    be a multiple of it); the wire format never changes.
    """
    graph: list[dict[str, Any]] = [
        {
            "op": "centreCrop",
            "height": CROP_SIZE,
            "width": CROP_SIZE,
            "offset": [CROP_OFFSET, CROP_OFFSET],
        },
        {"op": "cast", "to": "float32"},
        {"op": "scale", "divisor": 255.0},
    ]
    if network_size != CROP_SIZE:
        graph.append({"op": "averagePool", "factor": pooling_factor(network_size)})
    graph += [
        {"op": "replicateChannels", "channels": 3},
        {"op": "normalise", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
    ]
    return {
        "wire": {
            "recipe": WIRE_RECIPE,
            "pixelFormat": "grey8",
            "size": [WIRE_SIZE, WIRE_SIZE],
            "steps": [
                {"op": "decode", "to": "grey8"},
                {"op": "resize", "shorterSide": WIRE_SIZE, "filter": WIRE_RESAMPLING},
                {"op": "centreCrop", "height": WIRE_SIZE, "width": WIRE_SIZE},
            ],
        },
        "graph": graph,
        "networkInput": {
            "layout": "NCHW",
            "channels": 3,
            "height": network_size,
            "width": network_size,
        },
    }


CAM_MEANING: Final = (
    "class activation map (Zhou et al. 2016): the last feature maps weighted by each label's "
    "classifier weights, before global average pooling; mean over (h, w) + bias[k] = logit[k]"
)


def cam_spec(height: int, width: int, bias: Sequence[float]) -> dict[str, Any]:
    """The ``thorax.outputs.cam`` JSON: what the second output holds and which pixels it covers.

    The maps cover the centre crop the network sees, in wire-image pixels (``region``); each map
    cell stands for an equal rectangle of it. Values are in logit units without the bias.
    """
    return {
        "name": CAM_NAME,
        "dtype": "float32",
        "shape": [BATCH_AXIS, len(LABELS), height, width],
        "layout": "NKHW",
        "labels": "thorax.labels order",
        "units": "logit",
        "meaning": CAM_MEANING,
        "bias": [float(b) for b in bias],
        "region": {
            "top": CROP_OFFSET,
            "left": CROP_OFFSET,
            "height": CROP_SIZE,
            "width": CROP_SIZE,
        },
    }


def pooling_factor(network_size: int) -> int:
    """The in-graph average-pooling factor that turns the 224 crop into ``network_size``."""
    if network_size < 1 or CROP_SIZE % network_size:
        raise ValueError(f"network input size must divide {CROP_SIZE}, got {network_size}")
    return CROP_SIZE // network_size


class ContractError(ValueError):
    """An ONNX model or its metadata does not meet the Thorax model contract."""


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=False, allow_nan=False)


def build_metadata(
    *,
    name: str,
    version: str,
    thresholds: Sequence[float],
    auroc_validation: Mapping[str, float | None],
    training: Mapping[str, Any],
    network_size: int = CROP_SIZE,
    auroc_test: Mapping[str, float | None] | None = None,
    quantization: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Assemble the ``metadata_props`` of a model file (all values are strings)."""
    metadata = {
        KEY_SCHEMA: SCHEMA,
        KEY_NAME: name,
        KEY_VERSION: version,
        KEY_LABELS: _json(list(LABELS)),
        KEY_THRESHOLDS: _json([round(float(t), 6) for t in thresholds]),
        KEY_INPUT: _json(dict(INPUT_SPEC)),
        KEY_OUTPUT: _json(dict(OUTPUT_SPEC)),
        KEY_PREPROCESSING: _json(preprocessing_spec(network_size)),
        KEY_TRAINING: _json(dict(training)),
        KEY_AUROC_VALIDATION: _json(
            {label: _round_or_none(auroc_validation.get(label)) for label in LABELS}
        ),
    }
    if auroc_test is not None:
        metadata[KEY_AUROC_TEST] = _json(
            {label: _round_or_none(auroc_test.get(label)) for label in LABELS}
        )
    if quantization is not None:
        metadata[KEY_QUANTIZATION] = _json(dict(quantization))
    validate_metadata(metadata)
    return metadata


def _round_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 6)


def _load(metadata: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as error:
        raise ContractError(f"{key} is not valid JSON: {error}") from error


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_metadata(metadata: Mapping[str, str]) -> None:
    """Raise ContractError unless every contract key is present and well formed."""
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise ContractError(f"missing metadata keys: {', '.join(missing)}")
    if metadata[KEY_SCHEMA] != SCHEMA:
        raise ContractError(f"{KEY_SCHEMA} must be {SCHEMA!r}, got {metadata[KEY_SCHEMA]!r}")
    for key in (KEY_NAME, KEY_VERSION):
        if not metadata[key].strip():
            raise ContractError(f"{key} must not be empty")
    if _load(metadata, KEY_LABELS) != list(LABELS):
        raise ContractError(f"{KEY_LABELS} must list the 14 NIH labels in output order")
    thresholds = _load(metadata, KEY_THRESHOLDS)
    if (
        not isinstance(thresholds, list)
        or len(thresholds) != len(LABELS)
        or not all(_is_number(t) and 0.0 < t < 1.0 for t in thresholds)
    ):
        raise ContractError(f"{KEY_THRESHOLDS} must be {len(LABELS)} numbers in (0, 1)")
    if _load(metadata, KEY_INPUT) != dict(INPUT_SPEC):
        raise ContractError(f"{KEY_INPUT} must be {_json(dict(INPUT_SPEC))}")
    if _load(metadata, KEY_OUTPUT) != dict(OUTPUT_SPEC):
        raise ContractError(f"{KEY_OUTPUT} must be {_json(dict(OUTPUT_SPEC))}")
    preprocessing = _load(metadata, KEY_PREPROCESSING)
    if not isinstance(preprocessing, dict) or not {"wire", "graph"} <= preprocessing.keys():
        raise ContractError(f"{KEY_PREPROCESSING} must describe 'wire' and 'graph'")
    training = _load(metadata, KEY_TRAINING)
    if not isinstance(training, dict) or not training:
        raise ContractError(f"{KEY_TRAINING} must be a non-empty JSON object")
    for key in (KEY_AUROC_VALIDATION, KEY_AUROC_TEST):
        if key in metadata:
            _validate_auroc(key, _load(metadata, key))
    if KEY_QUANTIZATION in metadata and not isinstance(_load(metadata, KEY_QUANTIZATION), dict):
        raise ContractError(f"{KEY_QUANTIZATION} must be a JSON object")
    if KEY_CAM in metadata:
        validate_cam_spec(_load(metadata, KEY_CAM))


def validate_cam_spec(spec: object) -> None:
    """Raise ContractError unless ``spec`` is a well-formed ``thorax.outputs.cam`` value."""
    if not isinstance(spec, dict) or spec.get("name") != CAM_NAME:
        raise ContractError(f"{KEY_CAM} must be a JSON object naming the output {CAM_NAME!r}")
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 4
        or shape[:2] != [BATCH_AXIS, len(LABELS)]
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape[2:])
    ):
        raise ContractError(f"{KEY_CAM} shape must be [{BATCH_AXIS!r}, {len(LABELS)}, h, w]")
    bias = spec.get("bias")
    if not isinstance(bias, list) or len(bias) != len(LABELS) or not all(map(_is_number, bias)):
        raise ContractError(f"{KEY_CAM} bias must be {len(LABELS)} finite numbers")
    region = spec.get("region")
    sides = ("top", "left", "height", "width")
    if not isinstance(region, dict) or not all(
        isinstance(region.get(k), int) and region[k] >= 0 for k in sides
    ):
        raise ContractError(f"{KEY_CAM} region must give top, left, height and width in pixels")
    if (
        region["height"] < 1
        or region["width"] < 1
        or region["top"] + region["height"] > WIRE_SIZE
        or region["left"] + region["width"] > WIRE_SIZE
    ):
        raise ContractError(f"{KEY_CAM} region must lie inside the {WIRE_SIZE}² input")


def _validate_auroc(key: str, auroc: object) -> None:
    if not isinstance(auroc, dict) or list(auroc.keys()) != list(LABELS):
        raise ContractError(f"{key} must map each label, in order, to its AUROC")
    for label, value in auroc.items():
        if value is not None and not (_is_number(value) and 0.0 <= value <= 1.0):
            raise ContractError(f"{key}[{label}] must be in [0, 1] or null")
