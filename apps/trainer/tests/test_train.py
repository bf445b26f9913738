from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from thorax_trainer.contract import KEY_TRAINING, LABELS
from thorax_trainer.dataset import Record, Split
from thorax_trainer.export import metadata_for, training_summary
from thorax_trainer.metrics import MetricError
from thorax_trainer.prepare import WireCache
from thorax_trainer.train import (
    TrainConfig,
    TrainResult,
    _Trainer,
    load_checkpoint,
    positive_weights,
    train,
    warmup_rate,
    without_uncached,
)


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


def test_warmup_rate_ramps_then_hands_over_and_is_absent_at_zero() -> None:
    lr, start = 1e-2, 1e-3
    # No warm-up (CheXNet): nothing is ever set, every step runs at the optimiser's lr.
    assert [warmup_rate(step, 0, lr, start) for step in range(5)] == [None] * 5
    # Four warm-up steps: start x lr at step 0, linear, the full rate at step 4, then hands off.
    rates = [warmup_rate(step, 4, lr, start) for step in range(7)]
    assert rates[:5] == pytest.approx([lr * (start + (1 - start) * k / 4) for k in range(5)])
    assert rates[0] == pytest.approx(lr * start)
    assert rates[4] == lr
    assert rates[5:] == [None, None]


def test_no_warmup_trains_at_the_full_rate_and_the_plateau_still_decays(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    lr = 1e-2
    seen: list[float] = []
    original = _Trainer._warmup

    def record(self: _Trainer, step: int) -> None:
        original(self, step)
        seen.append(self.optimizer.param_groups[0]["lr"])

    _Trainer._warmup = record  # type: ignore[method-assign]
    try:
        train(
            tiny_config(
                synthetic_dir,
                tmp_path / "run",
                epochs=3,
                learning_rate=lr,
                warmup_epochs=0.0,
                plateau_threshold=10.0,
            )
        )
    finally:
        _Trainer._warmup = original  # type: ignore[method-assign]
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    steps = checkpoint["globalStep"] // 3
    # Every step of epoch 1 at the full rate, from the very first one.
    assert seen[:steps] == [lr] * steps
    # Epoch 1 sets the plateau's reference, epoch 2 is one bad epoch, epoch 3 decays x 0.1.
    rates = [entry["learningRate"] for entry in checkpoint["history"]]
    assert rates == pytest.approx([lr, lr, lr * 0.1])
    assert seen[2 * steps :] == pytest.approx([lr] * steps)  # epoch 3 ran before the decay
    schedule = training_summary(load_checkpoint(tmp_path / "run" / "best.pt"))["schedule"]
    assert schedule.startswith("no warmup, ReduceLROnPlateau")
    with pytest.raises(ValueError, match="warm-up epochs must be >= 0"):
        train(tiny_config(synthetic_dir, tmp_path / "bad", warmup_epochs=-1.0))


def test_non_finite_validation_scores_fail_the_run(
    synthetic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def diverged(self: _Trainer, records: list[Record]) -> np.ndarray:
        return np.full((len(records), len(LABELS)), np.nan, dtype=np.float32)

    monkeypatch.setattr(_Trainer, "evaluate", diverged)
    with pytest.raises(MetricError, match=r"epoch 1, validation: AUROC of \w+: \d+ of \d+ scores"):
        train(tiny_config(synthetic_dir, tmp_path / "run", epochs=2))
    assert not (tmp_path / "run" / "best.pt").exists()


def test_images_left_out_of_the_splits_are_counted_by_reason() -> None:
    def record(name: str, patient: str) -> Record:
        return Record(name, (), patient)

    split = Split(
        [record("a.png", "1"), record("b.png", "1")],
        [record("c.png", "2")],
        [record("d.png", "3"), record("e.png", "4")],
        "official",
        {"notInAnyList": 2},
    )
    cache = WireCache(Path("c"), ["a.png", "c.png", "d.png"], np.zeros((3, 1, 1, 1), np.uint8))
    kept = without_uncached(split, cache)
    assert [r.image_index for r in kept.train] == ["a.png"]
    assert [r.image_index for r in kept.test] == ["d.png"]
    assert kept.excluded == {"notInAnyList": 2, "imageMissing": 2}
    cache.left_out["e.png"] = "imageUnreadable"
    counted = without_uncached(split, cache).excluded
    assert counted == {"notInAnyList": 2, "imageMissing": 1, "imageUnreadable": 1}
    assert without_uncached(kept, cache).excluded == kept.excluded


def test_excluded_images_reach_the_report_the_metadata_and_the_log(
    synthetic_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data, ignore=shutil.ignore_patterns("wire-cache"))
    images = sorted((data / "images").iterdir())
    for path in images[:3]:
        path.unlink()
    images[3].write_bytes(b"\x89PNG\r\n\x1a\n truncated download")
    caplog.set_level(logging.INFO, logger="thorax_trainer")
    run = tmp_path / "run"
    result = train(tiny_config(data, run, epochs=1, skip_missing=True))
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert report["excluded"] == {"imageMissing": 3, "imageUnreadable": 1}
    assert sum(report["images"].values()) == 56
    markdown = (run / "report.md").read_text(encoding="utf-8")
    assert "- excluded from the splits: 4 images (imageMissing 3, imageUnreadable 1)" in markdown
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "excluded from the splits: 4 images (imageMissing 3, imageUnreadable 1)" in warnings
    metadata = metadata_for(load_checkpoint(result.best_checkpoint), "t", "1")
    training = json.loads(metadata[KEY_TRAINING])
    assert training["dataset"]["excluded"] == {"imageMissing": 3, "imageUnreadable": 1}


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
