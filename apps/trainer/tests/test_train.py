from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from thorax_trainer.contract import LABELS
from thorax_trainer.train import TrainConfig, TrainResult, load_checkpoint, positive_weights, train


def _states_equal(a: Path, b: Path) -> bool:
    sa, sb = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_runs_are_deterministic_and_resume_continues_exactly(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    straight = train(tiny_config(synthetic_dir, tmp_path / "a", epochs=3, cache_dir=cache))
    again = train(tiny_config(synthetic_dir, tmp_path / "b", epochs=3, cache_dir=cache))
    assert _states_equal(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")
    assert straight.validation_auroc == again.validation_auroc

    train(tiny_config(synthetic_dir, tmp_path / "c", epochs=1, cache_dir=cache))
    resumed = train(
        tiny_config(synthetic_dir, tmp_path / "c", epochs=3, cache_dir=cache, resume=True)
    )
    assert load_checkpoint(tmp_path / "c" / "last.pt")["epoch"] == 3
    assert _states_equal(tmp_path / "a" / "last.pt", tmp_path / "c" / "last.pt")
    assert resumed.validation_auroc == straight.validation_auroc
    other_seed = train(
        tiny_config(synthetic_dir, tmp_path / "d", epochs=1, cache_dir=cache, seed=8)
    )
    assert other_seed.validation_auroc != straight.validation_auroc


def test_warmup_then_plateau_decay(synthetic_dir: Path, tmp_path: Path) -> None:
    lr, start = 1e-2, 1e-3
    # An absurd plateau threshold makes every epoch after the first "no improvement".
    train(
        tiny_config(
            synthetic_dir,
            tmp_path / "run",
            epochs=4,
            learning_rate=lr,
            warmup_epochs=1.0,
            warmup_start_factor=start,
            plateau_threshold=10.0,
        )
    )
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    rates = [entry["learningRate"] for entry in checkpoint["history"]]
    steps = checkpoint["globalStep"] // 4
    # Epoch 1 ends inside warmup (last step at (W - 1) / W of the ramp); epoch 2 runs at lr and
    # sets the plateau's reference; epoch 3 is one bad epoch (patience 1); epoch 4 decays x 0.1.
    assert rates[0] == pytest.approx(lr * (start + (1 - start) * (steps - 1) / steps))
    assert rates[1:] == pytest.approx([lr, lr, lr * 0.1])


def test_early_stopping_ends_a_run_that_stopped_improving(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    # Learning rate 0: only batch-norm statistics move, so the score soon stops improving.
    config = tiny_config(
        synthetic_dir, tmp_path / "run", epochs=8, learning_rate=0.0, early_stopping=1
    )
    result = train(config)
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + 1 < 8
    history = load_checkpoint(tmp_path / "run" / "last.pt")["history"]
    scores = [entry["validationMeanAuroc"] for entry in history]
    assert scores[-1] <= max(scores) == scores[result.best_epoch - 1]
    # Resuming a stopped run does not train further.
    config.resume = True
    assert train(config).epochs_run == result.epochs_run


def test_positive_weights_are_negatives_over_positives_capped() -> None:
    targets = np.zeros((100, 14), dtype=np.float32)
    targets[:20, 0] = 1  # 80 / 20 = 4
    targets[:, 1] = 1  # every image positive → 0, raised to 1
    targets[:1, 2] = 1  # 99 / 1 = 99 → capped at 50
    weights = positive_weights(targets, cap=50.0)
    assert weights[0] == pytest.approx(4.0)
    assert weights[1] == 1.0
    assert weights[2] == 50.0
    assert weights[3] == 50.0  # no positive at all: the cap


def test_balanced_weights_and_sgd_run(synthetic_dir: Path, tmp_path: Path) -> None:
    result = train(
        tiny_config(
            synthetic_dir, tmp_path / "run", epochs=1, optimizer="sgd", pos_weight="balanced"
        )
    )
    checkpoint = load_checkpoint(result.best_checkpoint)
    assert checkpoint["config"]["optimizer"] == "sgd"
    assert checkpoint["config"]["pos_weight"] == "balanced"
    with pytest.raises(ValueError, match="unknown optimizer"):
        train(tiny_config(synthetic_dir, tmp_path / "bad", optimizer="lamb"))


def test_the_run_reports_validation_and_test_like_chexnet(
    trained_run: tuple[TrainConfig, TrainResult],
) -> None:
    config, result = trained_run
    report = json.loads((config.run_dir / "report.json").read_text(encoding="utf-8"))
    assert report["split"] == "official"
    assert report["test"]["meanAuroc"] == pytest.approx(result.test_mean_auroc)
    assert report["validation"]["meanAuroc"] == pytest.approx(result.validation_mean_auroc)
    assert len(report["thresholds"]) == 14
    checkpoint = load_checkpoint(result.best_checkpoint)
    assert checkpoint["test"]["images"] == report["images"]["test"] > 0
    assert checkpoint["validation"]["thresholds"] == result.thresholds
    markdown = (config.run_dir / "report.md").read_text(encoding="utf-8")
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| Pathology | Wang et al. (2017) | Yao et al. (2017) | CheXNet")
    assert [row.split(" | ")[0].lstrip("| ") for row in table[1:15]] == list(LABELS)
    assert table[2].startswith("| Cardiomegaly | 0.807 | 0.904 | 0.925 |")
    assert table[15].startswith("| **mean** | **0.738** | **0.803** | **0.841** |")


def test_ddp_with_torchrun_on_cpu(synthetic_dir: Path, tmp_path: Path) -> None:
    """Two gloo ranks on the CPU: disjoint shards, one checkpoint, metrics from all shards."""
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "thorax_trainer",
        "-q",
        "train",
        "--data",
        str(synthetic_dir),
        "--run-dir",
        str(run),
        "--cache",
        str(tmp_path / "cache"),
        "--backbone",
        "tiny-cnn",
        "--input-size",
        "56",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--loader-threads",
        "1",
        "--prepare-workers",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=240, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    best = load_checkpoint(run / "best.pt")
    assert best["device"]["worldSize"] == 2
    train_images = best["dataset"]["split"]["images"]["train"]
    per_epoch = best["history"][0]["trainImages"]
    # Both ranks' images are counted: the whole split once (padded to 2 x 4-image batches).
    assert train_images <= per_epoch + 8
    assert per_epoch % 8 == 0
    assert best["test"]["images"] == best["dataset"]["split"]["images"]["test"]
    assert len(best["validation"]["thresholds"]) == 14
    assert not (run / "best.pt.tmp").exists()


def test_autocast_and_channels_last_paths_run_on_the_cpu(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    """The GPU defaults (bf16 autocast, channels_last) forced on the CPU: same code path."""
    result = train(
        tiny_config(synthetic_dir, tmp_path / "run", epochs=1, precision="bf16", channels_last="on")
    )
    device = load_checkpoint(result.best_checkpoint)["device"]
    assert device == {
        "type": "cpu",
        "name": "cpu",
        "worldSize": 1,
        "autocast": "bfloat16",
        "channelsLast": True,
        "compile": False,
    }
    assert result.validation_mean_auroc is not None
