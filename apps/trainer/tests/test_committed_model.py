"""The model files committed under models/ meet the contract and run in ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thorax_trainer.contract import KEY_AUROC_VALIDATION, KEY_QUANTIZATION, KEY_VERSION
from thorax_trainer.export import sha256
from thorax_trainer.verify import verify

REPO = Path(__file__).resolve().parents[3]
COMMITTED = sorted((REPO / "models").glob("*/*/model.onnx"))
COMMITTED_INT8 = sorted((REPO / "models").glob("*/*/model.int8.onnx"))


@pytest.mark.skipif(not COMMITTED, reason="no committed model under models/")
@pytest.mark.parametrize("path", COMMITTED + COMMITTED_INT8, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_model_meets_the_contract(path: Path) -> None:
    report = verify(path)
    assert report.metadata[KEY_VERSION] == path.parent.name
    auroc = json.loads(report.metadata[KEY_AUROC_VALIDATION])
    defined = [v for v in auroc.values() if v is not None]
    assert sum(defined) / len(defined) > 0.7
    assert path.stat().st_size < 2 * 1024 * 1024


@pytest.mark.parametrize("path", COMMITTED_INT8, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_int8_variant_belongs_to_its_fp32_model(path: Path) -> None:
    quantization = json.loads(verify(path).metadata[KEY_QUANTIZATION])
    assert quantization["fp32Sha256"] == sha256(path.with_name("model.onnx"))
    assert abs(quantization["testMeanAuroc"]["difference"]) < 0.02
