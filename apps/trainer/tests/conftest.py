from __future__ import annotations

from pathlib import Path

import pytest

from thorax_trainer.synthetic import generate


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset (60 images, 256 px) shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, images=60, seed=3, size=256)
    return root
