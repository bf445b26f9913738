"""Datasets in the NIH ChestX-ray14 layout: ``Data_Entry_2017.csv`` plus PNG files.

A dataset directory holds the CSV and the images either in ``images/`` or, as the NIH download
ships them, in ``images_001/images/`` … ``images_012/images/``. Splits are by patient, never by
image, so no patient's follow-up studies end up on both sides of a split.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from thorax_trainer.contract import LABELS, NO_FINDING, WIRE_SIZE
from thorax_trainer.wire import UInt8Array, load_wire

CSV_NAME = "Data_Entry_2017.csv"
# Optional sidecar describing the dataset (name, kind, …) for the model's training summary.
DATASET_INFO = "dataset.json"
COLUMNS: tuple[str, ...] = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("Image Index", "Finding Labels", "Patient ID")
SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")


class DatasetError(ValueError):
    """The dataset directory or its CSV is not in the expected layout."""


@dataclass(frozen=True)
class Record:
    """One row of ``Data_Entry_2017.csv``."""

    image_index: str
    labels: tuple[str, ...]
    patient_id: str
    follow_up: int = 0
    age: int | None = None
    gender: str = ""
    view_position: str = ""
    width: int | None = None
    height: int | None = None
    spacing_x: float | None = None
    spacing_y: float | None = None

    def target(self) -> npt.NDArray[np.float32]:
        """Multi-hot vector over LABELS (all zero for "No Finding")."""
        vector = np.zeros(len(LABELS), dtype=np.float32)
        for label in self.labels:
            vector[LABELS.index(label)] = 1.0
        return vector


def parse_finding_labels(text: str) -> tuple[str, ...]:
    """``"Effusion|Mass"`` → ``("Effusion", "Mass")``; ``"No Finding"`` → ``()``."""
    parts = [part.strip() for part in text.split("|") if part.strip()]
    if not parts:
        raise DatasetError("empty 'Finding Labels'")
    if parts == [NO_FINDING]:
        return ()
    unknown = [part for part in parts if part not in LABELS]
    if unknown:
        raise DatasetError(f"unknown finding labels: {', '.join(unknown)}")
    # Keep model order and drop duplicates so targets and CSV round-trips are canonical.
    return tuple(label for label in LABELS if label in parts)


def format_finding_labels(labels: Iterable[str]) -> str:
    """Inverse of parse_finding_labels."""
    ordered = [label for label in LABELS if label in set(labels)]
    return "|".join(ordered) if ordered else NO_FINDING


def _int_or_none(text: str | None) -> int | None:
    if text is None or not text.strip():
        return None
    digits = text.strip().rstrip("YyMmDd")  # older releases wrote ages as "058Y"
    try:
        return int(float(digits))
    except ValueError:
        return None


def _float_or_none(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def read_records(csv_path: Path) -> list[Record]:
    """Parse an NIH-layout CSV. Extra columns (such as the trailing empty one) are ignored."""
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if missing:
            raise DatasetError(f"{csv_path}: missing columns {', '.join(missing)}")
        records: list[Record] = []
        seen: set[str] = set()
        for line, row in enumerate(reader, start=2):
            image_index = (row["Image Index"] or "").strip()
            patient_id = (row["Patient ID"] or "").strip()
            if not image_index or not patient_id:
                raise DatasetError(f"{csv_path}:{line}: empty 'Image Index' or 'Patient ID'")
            if image_index in seen:
                raise DatasetError(f"{csv_path}:{line}: duplicate image {image_index}")
            seen.add(image_index)
            try:
                labels = parse_finding_labels(row["Finding Labels"] or "")
            except DatasetError as error:
                raise DatasetError(f"{csv_path}:{line}: {error}") from error
            records.append(
                Record(
                    image_index=image_index,
                    labels=labels,
                    patient_id=patient_id,
                    follow_up=_int_or_none(row.get("Follow-up #")) or 0,
                    age=_int_or_none(row.get("Patient Age")),
                    gender=(row.get("Patient Gender") or "").strip(),
                    view_position=(row.get("View Position") or "").strip(),
                    width=_int_or_none(row.get("OriginalImage[Width")),
                    height=_int_or_none(row.get("Height]")),
                    spacing_x=_float_or_none(row.get("OriginalImagePixelSpacing[x")),
                    spacing_y=_float_or_none(row.get("y]")),
                )
            )
    if not records:
        raise DatasetError(f"{csv_path}: no rows")
    return records


def write_records(csv_path: Path, records: Iterable[Record]) -> None:
    """Write records in the NIH column layout."""
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for r in records:
            writer.writerow(
                [
                    r.image_index,
                    format_finding_labels(r.labels),
                    r.follow_up,
                    r.patient_id,
                    "" if r.age is None else r.age,
                    r.gender,
                    r.view_position,
                    "" if r.width is None else r.width,
                    "" if r.height is None else r.height,
                    "" if r.spacing_x is None else f"{r.spacing_x:.3f}",
                    "" if r.spacing_y is None else f"{r.spacing_y:.3f}",
                ]
            )


def image_directories(root: Path) -> list[Path]:
    """``images/`` first, then the NIH archive folders ``images_*/images/`` in name order."""
    candidates = [root / "images", *sorted(root.glob("images_*/images"))]
    return [path for path in candidates if path.is_dir()]


def resolve_image_paths(root: Path, records: Sequence[Record]) -> list[Path]:
    """Find every record's file; raise DatasetError naming the first few that are missing."""
    directories = image_directories(root)
    if not directories:
        raise DatasetError(f"{root}: no images/ or images_*/images/ directory")
    paths: list[Path] = []
    missing: list[str] = []
    for record in records:
        found = next(
            (d / record.image_index for d in directories if (d / record.image_index).is_file()),
            None,
        )
        if found is None:
            missing.append(record.image_index)
        else:
            paths.append(found)
    if missing:
        shown = ", ".join(missing[:5])
        raise DatasetError(f"{root}: {len(missing)} images not found (e.g. {shown})")
    return paths


@dataclass(frozen=True)
class Split:
    """Records per split; every patient belongs to exactly one split."""

    train: list[Record]
    validation: list[Record]
    test: list[Record]

    def by_name(self) -> dict[str, list[Record]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def split_by_patient(
    records: Sequence[Record],
    fractions: tuple[float, float, float] = (0.7, 0.2, 0.1),
    seed: int = 0,
) -> Split:
    """Shuffle patients with ``seed`` and cut them into train/validation/test by patient count.

    The result depends only on the set of patient IDs, the fractions and the seed, not on row
    order. A split with a positive fraction gets at least one patient when there are enough.
    """
    if any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    patients = sorted({record.patient_id for record in records})
    order = np.random.default_rng(seed).permutation(len(patients))
    shuffled = [patients[i] for i in order]
    n = len(shuffled)
    n_validation = round(fractions[1] * n)
    n_test = round(fractions[2] * n)
    if fractions[1] > 0 and n_validation == 0 and n >= 2:
        n_validation = 1
    if fractions[2] > 0 and n_test == 0 and n >= 3:
        n_test = 1
    n_train = n - n_validation - n_test
    if n_train <= 0 and fractions[0] > 0:
        raise ValueError(f"too few patients ({n}) for split {fractions}")
    assignment: dict[str, str] = {}
    for i, patient in enumerate(shuffled):
        assignment[patient] = (
            "train" if i < n_train else "validation" if i < n_train + n_validation else "test"
        )
    parts: dict[str, list[Record]] = {name: [] for name in SPLIT_NAMES}
    for record in records:
        parts[assignment[record.patient_id]].append(record)
    return Split(train=parts["train"], validation=parts["validation"], test=parts["test"])


class WireImageDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """(uint8 wire image [1, 256, 256], float target [14]) pairs.

    With ``preload`` every image is decoded once into memory (64 KiB each at 256²), which is the
    right choice for small datasets; without it images are decoded on access.
    """

    def __init__(self, root: Path, records: Sequence[Record], *, preload: bool = True) -> None:
        self.records = list(records)
        self.paths = resolve_image_paths(root, self.records)
        self.targets = torch.from_numpy(
            np.stack([r.target() for r in self.records])
            if self.records
            else np.zeros((0, len(LABELS)), dtype=np.float32)
        )
        self._cache: torch.Tensor | None = None
        if preload:
            self._cache = torch.from_numpy(self._load_all())

    def _load_all(self) -> UInt8Array:
        images = np.empty((len(self.paths), 1, WIRE_SIZE, WIRE_SIZE), dtype=np.uint8)
        for i, path in enumerate(self.paths):
            images[i, 0] = load_wire(path)
        return images

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is not None:
            image = self._cache[index]
        else:
            image = torch.from_numpy(load_wire(self.paths[index])).unsqueeze(0)
        return image, self.targets[index]

    def images(self) -> torch.Tensor:
        """All images as one uint8 tensor [n, 1, 256, 256]."""
        if self._cache is not None:
            return self._cache
        return torch.from_numpy(self._load_all())
