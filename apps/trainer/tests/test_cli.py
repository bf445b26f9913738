"""End to end on a tiny dataset via the CLI: synth → prepare → train → resume → export → verify →
quantize → verify."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from thorax_trainer.cli import main
from thorax_trainer.contract import (
    KEY_AUROC_TEST,
    KEY_PREPROCESSING,
    KEY_TRAINING,
    LABELS,
    METADATA_KEYS,
    validate_metadata,
)
from thorax_trainer.train import load_checkpoint


def test_pipeline_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    run = tmp_path / "run"
    model = tmp_path / "models" / "2026.11.30-9" / "model.onnx"

    assert main(["-q", "synth", "--out", str(data), "--images", "48", "--size", "256"]) == 0
    synth = ["synth", "--out", str(data), "--images", "64", "--layout", "nih", "--clean"]
    assert main(["-q", *synth]) == 0
    assert (data / "images_001" / "images").is_dir()
    assert not (data / "images").exists()
    assert main(["-q", "prepare", "--data", str(data), "--workers", "1"]) == 0
    assert (data / "wire-cache" / "index.json").is_file()
    common = [
        *("--data", str(data), "--run-dir", str(run), "--backbone", "tiny-cnn"),
        *("--input-size", "56", "--batch-size", "8", "--device", "cpu", "--log-every", "0"),
    ]
    assert main(["-q", "train", *common, "--epochs", "1"]) == 0
    assert main(["-q", "train", *common, "--epochs", "2", "--resume"]) == 0
    checkpoint = load_checkpoint(run / "best.pt")
    assert len(checkpoint["validation"]["thresholds"]) == 14
    assert load_checkpoint(run / "last.pt")["epoch"] == 2
    assert (run / "report.md").is_file()

    version = ["--name", "thorax-test", "--version", "2026.11.30-9"]
    assert (
        main(["-q", "export", "--checkpoint", str(run / "best.pt"), "--out", str(model), *version])
        == 0
    )
    metadata = {p.key: p.value for p in onnx.load(model).metadata_props}
    assert set(METADATA_KEYS) <= metadata.keys()
    validate_metadata(metadata)
    training = json.loads(metadata[KEY_TRAINING])
    assert training["dataset"]["kind"] == "synthetic"
    assert training["dataset"]["split"] == "official"
    assert training["networkInput"] == 56
    assert sum(training["dataset"]["images"].values()) == 64
    assert json.loads(metadata[KEY_AUROC_TEST]).keys() == set(LABELS)
    preprocessing = json.loads(metadata[KEY_PREPROCESSING])
    assert {"op": "averagePool", "factor": 4} in preprocessing["graph"]
    sidecar = json.loads((model.parent / "model.json").read_text(encoding="utf-8"))
    assert sidecar["metadata"]["thorax.model.version"] == "2026.11.30-9"

    capsys.readouterr()
    assert main(["-q", "verify", "--model", str(model), "--checkpoint", str(run / "best.pt")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["maxAbsDiff"] <= 1e-4
    assert report["images"] > 0

    # Two epochs on 64 images leave a test split of a dozen: its AUROC moves by whole pairs (a
    # clean CI run measured a drop of 0.104), so the bound is widened here; the default, 0.01, is
    # for a real test split, and refusing beyond a bound is test_quantize.py's to check.
    quantize = ["quantize", "--model", str(model), "--checkpoint", str(run / "best.pt")]
    assert main(["-q", *quantize, "--max-auroc-drop", "0.25"]) == 0
    quantized = json.loads(capsys.readouterr().out)
    int8 = model.with_name("model.int8.onnx")
    assert quantized["model"] == str(int8)
    assert quantized["cpuSpeedRatio"] > 0
    assert (model.parent / "model.int8.json").is_file()
    assert main(["-q", "verify", "--model", str(int8)]) == 0


def test_synth_refuses_to_clean_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me", encoding="utf-8")
    assert main(["-q", "synth", "--out", str(tmp_path), "--images", "2", "--clean"]) == 2
    assert (tmp_path / "precious.txt").is_file()


def test_verify_reports_contract_errors(tmp_path: Path) -> None:
    broken = tmp_path / "model.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), broken)
    assert main(["-q", "verify", "--model", str(broken)]) == 1
