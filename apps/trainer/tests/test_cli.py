"""End to end on a tiny dataset: synth → train (1 epoch) → export → verify, via the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from thorax_trainer.cli import main
from thorax_trainer.contract import KEY_TRAINING, METADATA_KEYS, validate_metadata
from thorax_trainer.train import load_checkpoint


def test_pipeline_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    run = tmp_path / "run"
    model = tmp_path / "models" / "2026.11.30-9" / "model.onnx"

    assert main(["-q", "synth", "--out", str(data), "--images", "48", "--size", "256"]) == 0
    assert main(["-q", "synth", "--out", str(data), "--images", "48", "--clean"]) == 0
    common = ["--data", str(data), "--run-dir", str(run), "--batch-size", "16"]
    assert main(["-q", "train", *common, "--epochs", "1", "--split", "0.5,0.3,0.2"]) == 0
    assert (
        main(["-q", "train", *common, "--epochs", "2", "--split", "0.5,0.3,0.2", "--resume"]) == 0
    )
    checkpoint = load_checkpoint(run / "best.pt")
    assert len(checkpoint["validation"]["thresholds"]) == 14
    assert load_checkpoint(run / "last.pt")["epoch"] == 2

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
    assert training["dataset"]["split"] == "patient"
    assert sum(training["dataset"]["images"].values()) == 48
    sidecar = json.loads((model.parent / "model.json").read_text(encoding="utf-8"))
    assert sidecar["metadata"]["thorax.model.version"] == "2026.11.30-9"

    capsys.readouterr()
    assert main(["-q", "verify", "--model", str(model), "--checkpoint", str(run / "best.pt")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["maxAbsDiff"] <= 1e-4
    assert report["images"] > 0


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
