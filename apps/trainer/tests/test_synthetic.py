from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from thorax_trainer.contract import LABELS
from thorax_trainer.dataset import (
    COLUMNS,
    CSV_NAME,
    DATASET_INFO,
    TEST_LIST,
    TRAIN_VAL_LIST,
    read_list,
    read_records,
)
from thorax_trainer.synthetic import PREVALENCE, _draw_anatomy, generate, plan_records, render


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_generate_writes_nih_layout(synthetic_dir: Path) -> None:
    header = (synthetic_dir / CSV_NAME).read_text(encoding="utf-8").splitlines()[0]
    assert header.split(",") == list(COLUMNS)
    records = read_records(synthetic_dir / CSV_NAME)
    assert len(records) == 60
    for record in records[:5]:
        with Image.open(synthetic_dir / "images" / record.image_index) as image:
            assert image.mode == "L"
            assert image.size == (256, 256)
        assert record.image_index == f"{int(record.patient_id):08d}_{record.follow_up:03d}.png"
        assert (record.width, record.height) == (256, 256)
    info = json.loads((synthetic_dir / DATASET_INFO).read_text(encoding="utf-8"))
    assert info["kind"] == "synthetic"
    assert info["images"] == 60


def test_generate_is_deterministic_per_seed(tmp_path: Path) -> None:
    generate(tmp_path / "a", images=6, seed=11, size=128)
    generate(tmp_path / "b", images=6, seed=11, size=128)
    generate(tmp_path / "c", images=6, seed=12, size=128)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_labels_are_multi_label_imbalanced_and_grouped_by_patient() -> None:
    records = plan_records(3000, seed=1, size=256)
    counts = {label: sum(label in r.labels for r in records) for label in LABELS}
    assert all(count > 0 for count in counts.values())
    assert counts["Infiltration"] > 3 * counts["Hernia"]
    for label, prevalence in PREVALENCE.items():
        assert counts[label] / len(records) == pytest.approx(prevalence, abs=0.03)
    assert any(len(r.labels) >= 2 for r in records)
    assert any(not r.labels for r in records)
    patients = {r.patient_id for r in records}
    assert len(patients) < len(records)  # follow-ups


@pytest.mark.parametrize("label", LABELS)
def test_every_label_plants_a_visible_sign(label: str) -> None:
    anatomy = _draw_anatomy(np.random.default_rng(0))
    healthy = render(anatomy, (), np.random.default_rng(1), 256).astype(np.float64)
    sick = render(anatomy, (label,), np.random.default_rng(1), 256).astype(np.float64)
    difference = np.abs(sick - healthy)
    # Same noise, same anatomy: whatever differs is the sign, and it must be clearly visible
    # (at least 100 pixels changed by more than 20 grey levels inside the 224 crop).
    changed = difference[16:240, 16:240] > 20
    assert int(changed.sum()) >= 100, f"{label}: {int(changed.sum())} pixels changed"


def test_nih_layout_splits_folders_and_writes_patient_disjoint_lists(tmp_path: Path) -> None:
    records = generate(tmp_path, images=25, seed=4, size=64, layout="nih", archive_size=10)
    folders = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("images_*/images"))
    assert folders == ["images_001/images", "images_002/images", "images_003/images"]
    assert [len(list((tmp_path / f).iterdir())) for f in folders] == [10, 10, 5]
    assert not (tmp_path / "images").exists()
    train_val = read_list(tmp_path / TRAIN_VAL_LIST)
    test = read_list(tmp_path / TEST_LIST)
    assert sorted(train_val + test) == sorted(r.image_index for r in records)
    patient = {r.image_index: r.patient_id for r in records}
    assert not {patient[n] for n in train_val} & {patient[n] for n in test}
    assert 0.2 <= len(test) / len(records) < 0.5  # whole patients until 20 % is reached
    assert test == sorted(test)


def test_parallel_rendering_writes_the_same_bytes(tmp_path: Path) -> None:
    generate(tmp_path / "one", images=8, seed=5, size=64)
    generate(tmp_path / "two", images=8, seed=5, size=64, workers=2)
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")


def test_the_generator_says_where_it_planted_each_sign() -> None:
    """planted_example: the image alone with one sign, and the pixels that sign changed."""
    from thorax_trainer.synthetic import planted_example

    for label in LABELS:
        pixels, region = planted_example(label, seed=4)
        assert pixels.shape == region.shape == (256, 256)
        assert 0 < int(region.sum()) < 256 * 256 // 2, label
    # Mass sits in the upper lung on the image's left; Hernia low in the middle.
    _, mass = planted_example("Mass", seed=4)
    ys, xs = np.nonzero(mass)
    assert ys.mean() < 128
    assert xs.mean() < 128
    _, hernia = planted_example("Hernia", seed=4)
    ys, xs = np.nonzero(hernia)
    assert ys.mean() > 160
    assert abs(xs.mean() - 128) < 20


def test_asking_where_signs_went_does_not_change_the_image() -> None:
    anatomy = _draw_anatomy(np.random.default_rng([1, 1]))
    plain = render(anatomy, ("Mass", "Effusion"), np.random.default_rng([1, 2]))
    planted: dict[str, np.ndarray] = {}
    traced = render(anatomy, ("Mass", "Effusion"), np.random.default_rng([1, 2]), planted=planted)
    assert np.array_equal(plain, traced)
    assert set(planted) == {"Mass", "Effusion"}
