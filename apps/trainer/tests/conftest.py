from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from thorax_trainer.synthetic import generate
from thorax_trainer.train import TrainConfig, TrainResult, train


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: minutes-long acceptance runs; `scripts/trainer.sh acceptance` runs them",
    )


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset (60 images, 256 px) shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, images=60, seed=3, size=256)
    return root


def tiny_config(data: Path, run_dir: Path, **overrides: Any) -> TrainConfig:
    """A seconds-long CPU run: tiny CNN at 56 px, small batches, quiet."""
    values: dict[str, Any] = {
        "backbone": "tiny-cnn",
        "network_size": 56,
        "batch_size": 8,
        "epochs": 2,
        "learning_rate": 3e-3,
        "early_stopping": 0,
        "log_every": 0,
        "loader_threads": 1,
        "prepare_workers": 1,
        "device": "cpu",
        "cache_dir": run_dir.parent / f"{run_dir.name}-cache",
        **overrides,
    }
    return TrainConfig(data=data, run_dir=run_dir, **values)


@pytest.fixture(scope="session")
def trained_run(
    synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainConfig, TrainResult]:
    """One short finished run on the shared synthetic dataset, for export and quantisation."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    config = tiny_config(synthetic_dir, run_dir, epochs=3)
    return config, train(config)
