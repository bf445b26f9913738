"""Datasets in the NIH ChestX-ray14 layout: ``Data_Entry_2017.csv`` plus PNG files.

A dataset directory holds the CSV, the official split lists ``train_val_list.txt`` and
``test_list.txt``, and the images either in ``images/`` or, as the NIH download ships them, in
``images_001/images/`` … ``images_012/images/``. Splits are by patient, never by image, so no
patient's follow-up studies end up on both sides of a split: ``official`` takes NIH's test list
as the test set and cuts train_val by patient; ``random-patient`` is CheXNet's seeded 70/10/20
patient split.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from thorax_trainer.contract import LABELS, NO_FINDING

CSV_NAME = "Data_Entry_2017.csv"
# Optional sidecar describing the dataset (name, kind, …) for the model's training summary.
DATASET_INFO = "dataset.json"
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
SPLIT_METHODS: tuple[str, ...] = ("official", "random-patient")
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


def index_images(root: Path) -> dict[str, Path]:
    """File name → path over all image directories, listing each directory once.

    The first directory in ``image_directories`` order wins when a name appears twice.
    """
    directories = image_directories(root)
    if not directories:
        raise DatasetError(f"{root}: no images/ or images_*/images/ directory")
    found: dict[str, Path] = {}
    for directory in directories:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name not in found and entry.is_file():
                    found[entry.name] = Path(entry.path)
    return found


def resolve_image_paths(
    root: Path, records: Sequence[Record], index: Mapping[str, Path] | None = None
) -> list[Path]:
    """Find every record's file; raise DatasetError naming the first few that are missing."""
    files = index_images(root) if index is None else index
    missing = [r.image_index for r in records if r.image_index not in files]
    if missing:
        shown = ", ".join(missing[:5])
        raise DatasetError(
            f"{root}: {len(missing)} images not found (e.g. {shown}); "
            "use --skip-missing to train on the images that are present"
        )
    return [files[r.image_index] for r in records]


def read_list(path: Path) -> list[str]:
    """An NIH split list: one image file name per line; blank lines ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path} not found (the official split needs it)") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def write_list(path: Path, names: Iterable[str]) -> None:
    path.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")


@dataclass(frozen=True)
class Split:
    """Records per split; every patient belongs to exactly one split."""

    train: list[Record]
    validation: list[Record]
    test: list[Record]
    method: str = "random-patient"
    # What the split had to leave out, e.g. {"notInAnyList": 3}; empty when nothing.
    excluded: dict[str, int] = field(default_factory=dict)

    def by_name(self) -> dict[str, list[Record]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def patient_sets(self) -> dict[str, set[str]]:
        return {name: {r.patient_id for r in part} for name, part in self.by_name().items()}


def _shuffled_patients(records: Iterable[Record], seed: int) -> list[str]:
    patients = sorted({record.patient_id for record in records})
    order = np.random.default_rng(seed).permutation(len(patients))
    return [patients[i] for i in order]


def _cut(n: int, fraction: float, enough: int) -> int:
    """``round(fraction * n)``, but at least 1 for a positive fraction once ``n >= enough``."""
    count = round(fraction * n)
    return 1 if fraction > 0 and count == 0 and n >= enough else count


def split_by_patient(
    records: Sequence[Record],
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
) -> Split:
    """CheXNet's split: shuffle patients with ``seed``, cut them train/validation/test.

    The result depends only on the set of patient IDs, the fractions and the seed, not on row
    order. A split with a positive fraction gets at least one patient when there are enough.
    """
    if any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    shuffled = _shuffled_patients(records, seed)
    n = len(shuffled)
    n_validation = _cut(n, fractions[1], 2)
    n_test = _cut(n, fractions[2], 3)
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
    return Split(parts["train"], parts["validation"], parts["test"], method="random-patient")


def split_official(
    records: Sequence[Record],
    train_val: Iterable[str],
    test: Iterable[str],
    validation_fraction: float = 0.125,
    seed: int = 0,
) -> Split:
    """NIH's split: ``test_list.txt`` is the test set; train_val is cut by patient.

    ``validation_fraction`` of the train_val patients (shuffled with ``seed``) form the
    validation set. Images listed in neither file are left out, and so are train_val images of a
    patient who also has a test image (NIH's lists are patient-disjoint, so on the real data this
    removes nothing); both are counted in ``excluded``.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {validation_fraction}")
    test_names, train_val_names = set(test), set(train_val)
    both = test_names & train_val_names
    if both:
        raise DatasetError(
            f"{len(both)} images are in both train_val and test lists (e.g. {sorted(both)[0]})"
        )
    test_records = [r for r in records if r.image_index in test_names]
    test_patients = {r.patient_id for r in test_records}
    pool = [r for r in records if r.image_index in train_val_names]
    kept = [r for r in pool if r.patient_id not in test_patients]
    shuffled = _shuffled_patients(kept, seed)
    validation_patients = set(shuffled[: _cut(len(shuffled), validation_fraction, 2)])
    excluded = {
        "notInAnyList": sum(
            r.image_index not in test_names and r.image_index not in train_val_names
            for r in records
        ),
        "patientAlsoInTest": len(pool) - len(kept),
    }
    return Split(
        train=[r for r in kept if r.patient_id not in validation_patients],
        validation=[r for r in kept if r.patient_id in validation_patients],
        test=test_records,
        method="official",
        excluded={key: value for key, value in excluded.items() if value},
    )


def load_split(
    root: Path,
    method: str = "official",
    *,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    validation_fraction: float = 0.125,
    seed: int = 0,
    records: Sequence[Record] | None = None,
) -> Split:
    """Read the CSV (unless ``records`` is given) and split it with ``method``."""
    rows = read_records(root / CSV_NAME) if records is None else records
    if method == "official":
        return split_official(
            rows,
            read_list(root / TRAIN_VAL_LIST),
            read_list(root / TEST_LIST),
            validation_fraction,
            seed,
        )
    if method == "random-patient":
        return split_by_patient(rows, fractions, seed)
    raise ValueError(f"unknown split method {method!r} (official, random-patient)")
