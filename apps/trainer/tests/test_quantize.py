from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from thorax_trainer.contract import KEY_AUROC_TEST, KEY_QUANTIZATION, KEY_THRESHOLDS
from thorax_trainer.export import metadata_for, write_model
from thorax_trainer.prepare import open_cache
from thorax_trainer.quantize import quantize
from thorax_trainer.train import (
    TrainConfig,
    TrainResult,
    load_checkpoint,
    model_from_checkpoint,
    split_for,
    targets_of,
)
from thorax_trainer.verify import check_graph_io, read_metadata, verify


def test_int8_variant_keeps_the_contract_and_reports_its_cost(
    trained_run: tuple[TrainConfig, TrainResult], tmp_path: Path
) -> None:
    config, result = trained_run
    checkpoint = load_checkpoint(result.best_checkpoint)
    fp32 = tmp_path / "1" / "model.onnx"
    write_model(model_from_checkpoint(checkpoint), metadata_for(checkpoint, "t", "1"), fp32)
    assert config.cache_dir is not None
    cache = open_cache(config.cache_dir)
    split = split_for(config)
    val_images = np.asarray(cache.images[cache.positions(split.validation)])
    test_images = np.asarray(cache.images[cache.positions(split.test)])
    int8 = fp32.with_name("model.int8.onnx")
    outcome = quantize(
        fp32,
        int8,
        calibration=val_images[:8],
        validation=(val_images, targets_of(split.validation)),
        test=(test_images, targets_of(split.test)),
        speed_rounds=1,
    )
    proto = onnx.load(int8)
    check_graph_io(proto)
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # The preprocessing before the first convolution stays float: no quantize node before it.
    first_conv = next(i for i, n in enumerate(proto.graph.node) if n.op_type == "Conv")
    before = [n.op_type for n in proto.graph.node[:first_conv]]
    assert "Cast" in before
    metadata = read_metadata(proto)
    summary = json.loads(metadata[KEY_QUANTIZATION])
    assert summary["format"] == "QDQ"
    calibration = {"split": "validation", "images": min(8, len(val_images)), "method": "minmax"}
    assert summary["calibration"] == calibration
    assert summary["cpuSpeedRatio"] == pytest.approx(outcome.speed_ratio)
    assert summary["testMeanAuroc"]["fp32"] == pytest.approx(result.test_mean_auroc, abs=1e-6)
    assert outcome.max_abs_probability_diff < 0.2
    assert len(json.loads(metadata[KEY_THRESHOLDS])) == 14
    assert KEY_AUROC_TEST in metadata
    assert outcome.int8_bytes < outcome.fp32_bytes
    assert verify(int8).metadata[KEY_QUANTIZATION] == metadata[KEY_QUANTIZATION]
