"""INT8 variant: ONNX Runtime static quantisation of the convolutional body.

The fp32 model is first run through ONNX Runtime's quantisation pre-processing (shape inference
and graph optimisation, which folds batch norms into convolutions), then quantised in QDQ format:
weights int8 per output channel (symmetric), activations uint8 (asymmetric), ranges from MinMax
calibration over wire images of the training split. Only the convolutional body is quantised:

- the in-graph preprocessing (everything before the first convolution: crop, cast, scaling,
  pooling, normalisation) stays float, so the file keeps the contract's uint8 input;
- the head (everything after the last convolution: global pooling, the linear classifier, the
  sigmoid and the class activation maps of the ``cam`` output) stays float, so logits,
  probabilities and maps are not rounded to a uint8 grid (a quantised
  sigmoid moves probabilities in steps of about 1/255 and collapses the ranking AUROC measures).

Three splits, three jobs, none reused: calibration ranges come from the training split, the
INT8 model's own decision thresholds are chosen on validation (same rule as fp32), and the
differences to fp32 (mean AUROC, largest and mean absolute probability difference) are measured
on test (on validation only when the run has no test split). When a difference exceeds its bound
(``QuantizationBounds``) no file is written and ``QuantizationError`` says which; the bounds and
the measured figures are recorded in the ``thorax.quantization`` metadata, with the CPU speed
ratio measured in the same process on the same batches, alternating between the two sessions.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from thorax_trainer.contract import (
    INPUT_NAME,
    KEY_AUROC_TEST,
    KEY_AUROC_VALIDATION,
    KEY_QUANTIZATION,
    KEY_THRESHOLDS,
    LABELS,
    validate_metadata,
)
from thorax_trainer.export import attach_metadata, save_with_sidecar, sha256
from thorax_trainer.metrics import mean_auroc, per_label_auroc, per_label_thresholds
from thorax_trainer.verify import read_metadata, run_onnx

log = logging.getLogger(__name__)

CALIBRATION_SPLIT = "train"
THRESHOLD_SPLIT = "validation"

UInt8Images = npt.NDArray[np.uint8]
Targets = npt.NDArray[np.float32]


class _WireReader(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, images: UInt8Images, batch_size: int) -> None:
        self._batches: Iterator[UInt8Images] = iter(
            [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
        )

    def get_next(self) -> dict[str, UInt8Images] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch)}


class QuantizationError(ValueError):
    """The INT8 model differs from fp32 by more than a bound allows; nothing was written."""


@dataclass(frozen=True)
class QuantizationBounds:
    """How far the INT8 model may move from fp32 on the comparison split."""

    # fp32 mean AUROC minus INT8 mean AUROC (a gain is never refused).
    max_mean_auroc_drop: float = 0.01
    # Largest |p_int8 - p_fp32| over every image and label.
    max_abs_probability_diff: float = 0.1
    # Mean |p_int8 - p_fp32| over every image and label.
    max_mean_abs_probability_diff: float = 0.01

    def to_json(self) -> dict[str, float]:
        return {
            "maxMeanAurocDrop": self.max_mean_auroc_drop,
            "maxAbsProbabilityDiff": self.max_abs_probability_diff,
            "maxMeanAbsProbabilityDiff": self.max_mean_abs_probability_diff,
        }


@dataclass
class QuantizationResult:
    path: Path
    fp32_validation_mean_auroc: float | None
    int8_validation_mean_auroc: float | None
    fp32_test_mean_auroc: float | None
    int8_test_mean_auroc: float | None
    comparison_split: str
    max_abs_probability_diff: float
    mean_abs_probability_diff: float
    fp32_seconds_per_image: float
    int8_seconds_per_image: float
    fp32_bytes: int
    int8_bytes: int
    calibration_images: int
    float_nodes: list[str]

    @property
    def speed_ratio(self) -> float:
        """How many times faster INT8 runs than fp32 on this CPU (> 1: faster)."""
        return self.fp32_seconds_per_image / self.int8_seconds_per_image

    def auroc_difference(self, split: str = "test") -> float | None:
        fp32 = self.fp32_test_mean_auroc if split == "test" else self.fp32_validation_mean_auroc
        int8 = self.int8_test_mean_auroc if split == "test" else self.int8_validation_mean_auroc
        return None if fp32 is None or int8 is None else int8 - fp32

    def violations(self, bounds: QuantizationBounds) -> list[str]:
        """Each bound the result exceeds, as a sentence; empty when all hold."""
        found: list[str] = []
        difference = self.auroc_difference(self.comparison_split)
        if difference is not None and -difference > bounds.max_mean_auroc_drop:
            found.append(
                f"mean AUROC drops by {-difference:.4f} (bound {bounds.max_mean_auroc_drop})"
            )
        if self.max_abs_probability_diff > bounds.max_abs_probability_diff:
            found.append(
                f"largest probability difference {self.max_abs_probability_diff:.4f} "
                f"(bound {bounds.max_abs_probability_diff})"
            )
        if self.mean_abs_probability_diff > bounds.max_mean_abs_probability_diff:
            found.append(
                f"mean probability difference {self.mean_abs_probability_diff:.5f} "
                f"(bound {bounds.max_mean_abs_probability_diff})"
            )
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "model": str(self.path),
            "calibrationImages": self.calibration_images,
            "validationMeanAuroc": {
                "fp32": self.fp32_validation_mean_auroc,
                "int8": self.int8_validation_mean_auroc,
                "difference": self.auroc_difference("validation"),
            },
            "testMeanAuroc": {
                "fp32": self.fp32_test_mean_auroc,
                "int8": self.int8_test_mean_auroc,
                "difference": self.auroc_difference("test"),
            },
            "comparisonSplit": self.comparison_split,
            "maxAbsProbabilityDiff": self.max_abs_probability_diff,
            "meanAbsProbabilityDiff": self.mean_abs_probability_diff,
            "cpuSecondsPerImage": {
                "fp32": self.fp32_seconds_per_image,
                "int8": self.int8_seconds_per_image,
            },
            "cpuSpeedRatio": self.speed_ratio,
            "bytes": {"fp32": self.fp32_bytes, "int8": self.int8_bytes},
        }


def _float_prefix(proto: onnx.ModelProto) -> list[str]:
    """Names of the nodes before the first Conv: the in-graph preprocessing."""
    names: list[str] = []
    for node in proto.graph.node:
        if node.op_type == "Conv":
            return names
        names.append(node.name)
    raise ValueError("graph has no Conv node to quantise")


def _float_head(proto: onnx.ModelProto) -> list[str]:
    """Names of the nodes after the last Conv: pooling, the linear classifier, the sigmoid.

    ONNX keeps nodes in topological order, so everything past the last convolution depends on it
    and nothing before it depends on them.
    """
    nodes = list(proto.graph.node)
    last = max((i for i, node in enumerate(nodes) if node.op_type == "Conv"), default=None)
    if last is None:
        raise ValueError("graph has no Conv node to quantise")
    head = [node.name for node in nodes[last + 1 :]]
    if not any(node.op_type == "Sigmoid" for node in nodes[last + 1 :]):
        raise ValueError("no Sigmoid after the last Conv: not a Thorax classifier graph")
    return head


def session(path: Path, threads: int = 0) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), _options(threads), providers=["CPUExecutionProvider"])


def time_sessions(
    sessions: list[ort.InferenceSession], batch: UInt8Images, rounds: int = 5, repeats: int = 3
) -> list[float]:
    """Seconds per image of each session, alternating sessions round by round (after warm-up)."""
    totals = [0.0] * len(sessions)
    for s in sessions:
        s.run(None, {INPUT_NAME: batch})
    for _ in range(rounds):
        for i, s in enumerate(sessions):
            started = time.perf_counter()
            for _ in range(repeats):
                s.run(None, {INPUT_NAME: batch})
            totals[i] += time.perf_counter() - started
    return [total / (rounds * repeats * batch.shape[0]) for total in totals]


def quantize(
    fp32_path: Path,
    out_path: Path,
    *,
    calibration: UInt8Images,
    validation: tuple[UInt8Images, Targets],
    test: tuple[UInt8Images, Targets] | None,
    bounds: QuantizationBounds | None = None,
    method: str = "minmax",
    threads: int = 0,
    speed_batch: int = 8,
    speed_rounds: int = 5,
) -> QuantizationResult:
    """Write the INT8 model beside fp32 and measure what it costs and gains.

    ``calibration`` must come from the training split: validation picks the thresholds and test
    (validation when there is none) measures the differences, so neither may tune the ranges.
    Raises QuantizationError, writing nothing, when a difference exceeds ``bounds``.
    """
    bounds = bounds or QuantizationBounds()
    if len(calibration) == 0:
        raise ValueError("no calibration images")
    calibrate = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]
    fp32_proto = onnx.load(fp32_path)
    metadata = read_metadata(fp32_proto)
    with tempfile.TemporaryDirectory(prefix="thorax-quant-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quantized = Path(scratch) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
        prepared_proto = onnx.load(prepared)
        head = _float_head(prepared_proto)
        quantize_static(
            str(prepared),
            str(quantized),
            _WireReader(calibration, 16),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # 7-bit weights: x86 CPUs without VNNI (AVX2, AVX-512 before VNNI) multiply uint8
            # activations by int8 weights in pairs summed into int16 (vpmaddubsw), which saturates
            # with full-range weights; a model quantised on one CPU is served on others. On an
            # AVX2-only host the acceptance model's largest probability difference to fp32 was 0.48
            # with 8-bit weights (refused) and 0.07 with 7 (mean AUROC unchanged to 1e-4).
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_float_prefix(prepared_proto) + head,
            calibrate_method=calibrate,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        int8_proto = onnx.load(quantized)

    fp32_session = session(fp32_path, threads)
    # Score the INT8 graph before writing it: thresholds and AUROC go into its metadata.
    int8_bytes_model = int8_proto.SerializeToString()
    int8_session = ort.InferenceSession(
        int8_bytes_model, _options(threads), providers=["CPUExecutionProvider"]
    )
    val_images, val_targets = validation
    fp32_val = run_onnx(fp32_session, val_images, 32)
    int8_val = run_onnx(int8_session, val_images, 32)
    fp32_val_auroc = per_label_auroc(val_targets, fp32_val, LABELS)
    int8_val_auroc = per_label_auroc(val_targets, int8_val, LABELS)
    thresholds = per_label_thresholds(val_targets, int8_val)
    fp32_test_auroc: dict[str, float | None] | None = None
    int8_test_auroc: dict[str, float | None] | None = None
    compared = (fp32_val, int8_val)
    if test is not None and len(test[0]):
        fp32_test = run_onnx(fp32_session, test[0], 32)
        int8_test = run_onnx(int8_session, test[0], 32)
        fp32_test_auroc = per_label_auroc(test[1], fp32_test, LABELS)
        int8_test_auroc = per_label_auroc(test[1], int8_test, LABELS)
        compared = (fp32_test, int8_test)
    differences = np.abs(compared[0].astype(np.float64) - compared[1].astype(np.float64))
    timing_images = (test[0] if test is not None and len(test[0]) else val_images)[:speed_batch]
    fp32_spi, int8_spi = time_sessions(
        [fp32_session, int8_session], np.ascontiguousarray(timing_images), speed_rounds
    )

    result = QuantizationResult(
        path=out_path,
        fp32_validation_mean_auroc=mean_auroc(fp32_val_auroc),
        int8_validation_mean_auroc=mean_auroc(int8_val_auroc),
        fp32_test_mean_auroc=None if fp32_test_auroc is None else mean_auroc(fp32_test_auroc),
        int8_test_mean_auroc=None if int8_test_auroc is None else mean_auroc(int8_test_auroc),
        comparison_split="test" if fp32_test_auroc is not None else "validation",
        max_abs_probability_diff=float(differences.max()),
        mean_abs_probability_diff=float(differences.mean()),
        fp32_seconds_per_image=fp32_spi,
        int8_seconds_per_image=int8_spi,
        fp32_bytes=fp32_path.stat().st_size,
        int8_bytes=len(int8_bytes_model),
        calibration_images=len(calibration),
        float_nodes=head,
    )
    violations = result.violations(bounds)
    if violations:
        raise QuantizationError(
            f"INT8 model refused, {out_path} not written: on {result.comparison_split}, "
            + "; ".join(violations)
            + " (try --method percentile or more --calibration-images, or widen the bound)"
        )
    summary = {
        "method": "onnxruntime static quantisation",
        "format": "QDQ",
        "weights": "int8 with a 7-bit range (no int16 saturation on CPUs without VNNI), "
        "symmetric, per output channel",
        "activations": "uint8, asymmetric",
        "calibration": {
            "split": CALIBRATION_SPLIT,
            "images": result.calibration_images,
            "method": method,
        },
        "floatNodes": (
            "in-graph preprocessing (before the first Conv) and the head after the last Conv "
            "(pooling, linear classifier, sigmoid and, when present, the class activation maps: "
            f"{', '.join(head)})"
        ),
        "fp32Sha256": sha256(fp32_path),
        "thresholds": f"chosen on {THRESHOLD_SPLIT} from this model's own outputs "
        "(same rule as fp32)",
        "thresholdSplit": THRESHOLD_SPLIT,
        "bounds": bounds.to_json(),
        **{k: v for k, v in result.to_json().items() if k not in ("model", "calibrationImages")},
    }
    new_metadata = dict(metadata)
    new_metadata[KEY_THRESHOLDS] = json.dumps([round(float(t), 6) for t in thresholds])
    new_metadata[KEY_AUROC_VALIDATION] = json.dumps(
        {label: _round(int8_val_auroc.get(label)) for label in LABELS}
    )
    if int8_test_auroc is not None:
        new_metadata[KEY_AUROC_TEST] = json.dumps(
            {label: _round(int8_test_auroc.get(label)) for label in LABELS}
        )
    new_metadata[KEY_QUANTIZATION] = json.dumps(summary)
    validate_metadata(new_metadata)
    doc = f"{fp32_proto.doc_string} INT8 (static QDQ) variant.".strip()
    attach_metadata(int8_proto, new_metadata, doc)
    save_with_sidecar(int8_proto, new_metadata, out_path)
    result.int8_bytes = out_path.stat().st_size
    return result


def _options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)
