from __future__ import annotations

import numpy as np
import pytest

from thorax_trainer.contract import LABELS
from thorax_trainer.report import PUBLISHED, evaluation, markdown, rates_at_thresholds


def test_published_columns_hold_the_papers_means() -> None:
    means = {name: round(float(np.mean(list(v.values()))), 3) for name, v in PUBLISHED.items()}
    assert means == {
        "Wang et al. (2017)": 0.738,
        "Yao et al. (2017)": 0.803,
        "CheXNet (2017)": 0.841,
    }
    assert all(list(column) == list(LABELS) for column in PUBLISHED.values())


def test_rates_at_thresholds() -> None:
    targets = np.zeros((4, 14))
    targets[:2, 0] = 1
    scores = np.zeros((4, 14))
    scores[:, 0] = [0.9, 0.4, 0.6, 0.1]
    rates = rates_at_thresholds(targets, scores, [0.5] * 14)
    assert rates["Atelectasis"] == {"sensitivity": 0.5, "specificity": 0.5}
    assert rates["Hernia"] == {"sensitivity": None, "specificity": 1.0}


def test_markdown_marks_undefined_values_and_keeps_the_table_shape() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((50, 14)) < 0.3).astype(np.float32)
    targets[:, 13] = 0  # no Hernia anywhere: AUROC undefined
    scores = rng.random((50, 14))
    validation = evaluation(targets, scores)
    report = {
        "run": "r",
        "dataset": "d",
        "split": "official",
        "images": {"train": 1, "validation": 50, "test": 50},
        "backbone": "densenet121",
        "networkSize": 224,
        "initialisation": "random",
        "bestEpoch": 3,
        "epochsRun": 5,
        "stoppedEarly": True,
        "thresholdRule": "rule",
        "thresholds": [0.5] * 14,
        "validation": validation,
        "test": evaluation(targets, scores, [0.5] * 14),
    }
    text = markdown(report)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 16
    assert all(row.count(" | ") == rows[0].count(" | ") for row in rows[1:])
    hernia = rows[14].split(" | ")
    assert hernia[0] == "| Hernia"
    assert hernia[4] == "—"  # test AUROC undefined
    assert "(stopped early)" in text
    assert validation["meanAuroc"] == pytest.approx(
        np.mean([v for v in validation["auroc"].values() if v is not None])
    )
