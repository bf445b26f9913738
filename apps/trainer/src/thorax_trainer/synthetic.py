"""Synthetic "chest X-rays" in the NIH ChestX-ray14 layout, for tests and the tiny model.

Each image is an 8-bit grayscale PNG: a bright body ellipse on a dark background, two darker lung
fields, a mediastinum and a heart shadow. Every label plants its own learnable sign at its own
place (a plate-like band for Atelectasis, an enlarged heart for Cardiomegaly, a bright lung base
for Effusion, …), with random strength and jitter so that the task is learnable but not trivial.
Labels are multi-label and imbalanced; patients have 1-6 follow-up images that share anatomy and
tend to keep their findings, so an image-level split would leak.

The generator writes the whole NIH layout (CSV, official split lists, ``images/`` or the
``images_NNN/images/`` archive folders) at any size. The output is deterministic for a given seed,
image count and size. Nothing here is medically
meaningful; it exists to exercise the pipeline end to end.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from thorax_trainer.contract import LABELS
from thorax_trainer.dataset import (
    CSV_NAME,
    DATASET_INFO,
    TEST_LIST,
    TRAIN_VAL_LIST,
    Record,
    write_list,
    write_records,
)

FloatImage = npt.NDArray[np.float64]

DATASET_NAME = "thorax-synthetic-cxr"

# Per-image prevalence, ordered like NIH's (Infiltration most, Hernia least) but with a floor
# high enough that every label has positives in a validation split of a few hundred images.
PREVALENCE: dict[str, float] = {
    "Atelectasis": 0.12,
    "Cardiomegaly": 0.05,
    "Effusion": 0.14,
    "Infiltration": 0.20,
    "Mass": 0.06,
    "Nodule": 0.07,
    "Pneumonia": 0.04,
    "Pneumothorax": 0.06,
    "Consolidation": 0.05,
    "Edema": 0.045,
    "Emphysema": 0.045,
    "Fibrosis": 0.04,
    "Pleural_Thickening": 0.05,
    "Hernia": 0.04,
}
# Chance that a follow-up image keeps the previous image's findings instead of drawing anew.
PERSISTENCE = 0.5
MAX_FOLLOW_UPS = 6
# NIH images are 1024 px wide at about 0.143 mm per pixel; scale the spacing to our size.
NIH_WIDTH = 1024
NIH_SPACING_MM = 0.143


@dataclass(frozen=True)
class Anatomy:
    """Per-patient geometry, in fractions of the image size."""

    centre_x: float
    centre_y: float
    body_rx: float
    body_ry: float
    lung_rx: float
    lung_ry: float
    lung_gap: float
    heart_rx: float
    heart_ry: float
    body_level: float
    lung_level: float


def _draw_anatomy(rng: np.random.Generator) -> Anatomy:
    return Anatomy(
        centre_x=0.5 + rng.uniform(-0.015, 0.015),
        centre_y=0.5 + rng.uniform(-0.015, 0.015),
        body_rx=rng.uniform(0.40, 0.45),
        body_ry=rng.uniform(0.46, 0.50),
        lung_rx=rng.uniform(0.12, 0.14),
        lung_ry=rng.uniform(0.25, 0.29),
        lung_gap=rng.uniform(0.16, 0.18),
        heart_rx=rng.uniform(0.10, 0.115),
        heart_ry=rng.uniform(0.08, 0.095),
        body_level=rng.uniform(140, 165),
        lung_level=rng.uniform(55, 75),
    )


class _Canvas:
    """A float image with helpers that take coordinates in fractions of the image size."""

    def __init__(self, size: int) -> None:
        self.size = size
        axis = (np.arange(size, dtype=np.float64) + 0.5) / size
        self.y, self.x = np.meshgrid(axis, axis, indexing="ij")
        self.pixels: FloatImage = np.zeros((size, size), dtype=np.float64)

    def radius(self, cx: float, cy: float, rx: float, ry: float) -> FloatImage:
        """Normalised elliptical radius: 1 on the ellipse, 0 at its centre."""
        return np.sqrt(((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, edge: float = 0.08) -> FloatImage:
        """Soft ellipse mask in [0, 1] with an edge width of ``edge`` radii."""
        r = self.radius(cx, cy, rx, ry)
        return 1.0 / (1.0 + np.exp((r - 1.0) / edge))

    def gaussian(self, cx: float, cy: float, sigma: float) -> FloatImage:
        return np.exp(-(((self.x - cx) ** 2 + (self.y - cy) ** 2) / (2.0 * sigma**2)))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> FloatImage:
    """Low-frequency noise in [0, 1]: a random ``cells``² grid upsampled bicubically."""
    grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
    up = Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(up, dtype=np.float64) / 255.0


def _blur(pixels: FloatImage, sigma: float) -> FloatImage:
    """Separable Gaussian blur with edge replication."""
    radius = max(1, round(3 * sigma))
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(taps**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    out = pixels
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], "edge")
        length = out.shape[axis]
        out = sum(
            (
                weight * np.take(padded, np.arange(i, i + length), axis=axis)
                for i, weight in enumerate(kernel)
            ),
            start=np.zeros_like(out),
        )
    return out


@dataclass
class _Scene:
    canvas: _Canvas
    anatomy: Anatomy
    rng: np.random.Generator
    right_lung: FloatImage  # patient's right = image left (PA view)
    left_lung: FloatImage

    @property
    def lungs(self) -> FloatImage:
        return np.maximum(self.right_lung, self.left_lung)

    def strength(self) -> float:
        return float(self.rng.uniform(0.65, 1.0))

    def jitter(self, amount: float = 0.015) -> float:
        return float(self.rng.uniform(-amount, amount))

    def right_x(self) -> float:
        return self.anatomy.centre_x - self.anatomy.lung_gap

    def left_x(self) -> float:
        return self.anatomy.centre_x + self.anatomy.lung_gap


def _atelectasis(s: _Scene) -> None:
    # Plate-like horizontal band in the lower right lung.
    c, a = s.canvas, s.anatomy
    y = a.centre_y + 0.10 + s.jitter()
    band = np.exp(-(((c.y - y) / 0.012) ** 2)) * (np.abs(c.x - s.right_x()) < 0.09)
    c.pixels += 60 * s.strength() * band * s.right_lung


def _effusion(s: _Scene) -> None:
    # Bright fluid at one or both lung bases, rising laterally (meniscus).
    c, a = s.canvas, s.anatomy
    side = s.rng.integers(0, 3)  # 0 right, 1 left, 2 both
    level = a.centre_y + 0.13 + s.jitter()
    for index, (lung, cx) in enumerate(((s.right_lung, s.right_x()), (s.left_lung, s.left_x()))):
        if side not in (index, 2):
            continue
        meniscus = level - 0.5 * np.abs(c.x - cx) ** 1.2
        fluid = 1.0 / (1.0 + np.exp(-(c.y - meniscus) / 0.01))
        c.pixels += 75 * s.strength() * fluid * lung


def _infiltration(s: _Scene) -> None:
    # Patchy, blotchy opacity in the mid left lung.
    c, a = s.canvas, s.anatomy
    patches = np.clip((_smooth_noise(s.rng, c.size, 12) - 0.45) * 4.0, 0.0, 1.0)
    region = c.ellipse(s.left_x() - 0.02 + s.jitter(), a.centre_y + 0.02 + s.jitter(), 0.08, 0.09)
    c.pixels += 50 * s.strength() * patches * region * s.left_lung


def _mass(s: _Scene) -> None:
    # One large, well-defined round opacity in the upper right lung.
    c, a = s.canvas, s.anatomy
    radius = s.rng.uniform(0.04, 0.055)
    disk = c.ellipse(
        s.right_x() + s.jitter(0.03), a.centre_y - 0.12 + s.jitter(0.03), radius, radius
    )
    c.pixels += 75 * s.strength() * disk


def _nodule(s: _Scene) -> None:
    # Several small round opacities in the upper left lung.
    c, a = s.canvas, s.anatomy
    for _ in range(int(s.rng.integers(3, 6))):
        radius = s.rng.uniform(0.011, 0.016)
        cx = s.left_x() + s.rng.uniform(-0.06, 0.06)
        cy = a.centre_y - 0.16 + s.rng.uniform(-0.05, 0.05)
        c.pixels += 80 * s.strength() * c.ellipse(cx, cy, radius, radius, edge=0.15)


def _pneumonia(s: _Scene) -> None:
    # Large fuzzy opacity in the lower left lung.
    c, a = s.canvas, s.anatomy
    blob = c.gaussian(s.left_x() + s.jitter(), a.centre_y + 0.09 + s.jitter(), 0.05)
    c.pixels += 75 * s.strength() * blob * s.left_lung


def _pneumothorax(s: _Scene) -> None:
    # Black apex of the right lung without markings, bounded by a thin bright pleural line.
    c, a = s.canvas, s.anatomy
    cx, cy = s.right_x() - 0.03 + s.jitter(0.01), a.centre_y - 0.17 + s.jitter(0.01)
    r = c.radius(cx, cy, 0.075, 0.07)
    air = 1.0 / (1.0 + np.exp((r - 1.0) / 0.05)) * s.right_lung
    line = np.exp(-(((r - 1.0) / 0.06) ** 2)) * s.right_lung
    k = s.strength()
    c.pixels = c.pixels * (1.0 - 0.75 * k * air) + 45 * k * line


def _consolidation(s: _Scene) -> None:
    # Dense, homogeneous opacity with sharp edges in the mid right lung.
    c, a = s.canvas, s.anatomy
    region = c.ellipse(s.right_x() + s.jitter(), a.centre_y + s.jitter(), 0.06, 0.05, edge=0.03)
    c.pixels += 85 * s.strength() * region * s.right_lung


def _edema(s: _Scene) -> None:
    # Bilateral perihilar ("bat wing") haze.
    c, a = s.canvas, s.anatomy
    offset = 0.09 + s.jitter(0.01)
    haze = c.gaussian(a.centre_x - offset, a.centre_y, 0.055)
    haze += c.gaussian(a.centre_x + offset, a.centre_y, 0.055)
    c.pixels += 45 * s.strength() * haze * s.lungs


def _emphysema(s: _Scene) -> None:
    # Hyperlucent lungs: darker fields.
    s.canvas.pixels -= 28 * s.strength() * s.lungs


def _fibrosis(s: _Scene) -> None:
    # Reticular (net-like) lines in both upper lungs.
    c, a = s.canvas, s.anatomy
    period = s.rng.uniform(0.025, 0.032)
    net = np.maximum(np.cos(2 * np.pi * c.x / period), np.cos(2 * np.pi * c.y / period))
    upper = 1.0 / (1.0 + np.exp((c.y - (a.centre_y - 0.05)) / 0.02))
    c.pixels += 32 * s.strength() * np.clip(net, 0.0, 1.0) ** 4 * upper * s.lungs


def _pleural_thickening(s: _Scene) -> None:
    # Bright rim along the lateral edge of both lungs.
    c, a = s.canvas, s.anatomy
    k = s.strength()
    for cx, lateral in ((s.right_x(), c.x < s.right_x()), (s.left_x(), c.x > s.left_x())):
        r = c.radius(cx, a.centre_y, a.lung_rx, a.lung_ry)
        rim = np.exp(-(((r - 0.93) / 0.05) ** 2)) * lateral
        c.pixels += 60 * k * rim


def _hernia(s: _Scene) -> None:
    # Round retrocardiac opacity above the diaphragm with a gas bubble inside.
    c, a = s.canvas, s.anatomy
    cx, cy = a.centre_x + s.jitter(0.01), a.centre_y + 0.2 + s.jitter(0.01)
    k = s.strength()
    c.pixels += 70 * k * c.ellipse(cx, cy, 0.065, 0.05)
    c.pixels -= 70 * k * c.ellipse(cx + 0.01, cy - 0.01, 0.022, 0.017)


_SIGNS: dict[str, Callable[[_Scene], None]] = {
    "Atelectasis": _atelectasis,
    "Effusion": _effusion,
    "Infiltration": _infiltration,
    "Mass": _mass,
    "Nodule": _nodule,
    "Pneumonia": _pneumonia,
    "Pneumothorax": _pneumothorax,
    "Consolidation": _consolidation,
    "Edema": _edema,
    "Emphysema": _emphysema,
    "Fibrosis": _fibrosis,
    "Pleural_Thickening": _pleural_thickening,
    "Hernia": _hernia,
}


def render(
    anatomy: Anatomy,
    labels: tuple[str, ...],
    rng: np.random.Generator,
    size: int = 256,
    planted: dict[str, FloatImage] | None = None,
) -> npt.NDArray[np.uint8]:
    """Draw one image (uint8, size x size) with the signs of ``labels``.

    ``planted``, when given, receives per label of ``labels`` where its sign went: the absolute
    change in grey levels its drawing made (before exposure, blur and noise), so tests can check
    that a model looks at the right place. The image does not depend on it.
    """
    unknown = [label for label in labels if label not in LABELS]
    if unknown:
        raise ValueError(f"unknown labels: {unknown}")
    c = _Canvas(size)
    a = anatomy
    c.pixels[:] = 20.0 + 8.0 * _smooth_noise(rng, size, 4)
    body = c.ellipse(a.centre_x, a.centre_y + 0.05, a.body_rx, a.body_ry, edge=0.04)
    c.pixels += (a.body_level - 20.0) * body
    ry = a.lung_ry * (1.08 if "Emphysema" in labels else 1.0)
    cy = a.centre_y - 0.02
    right = c.ellipse(a.centre_x - a.lung_gap, cy, a.lung_rx, ry, edge=0.06)
    left = c.ellipse(a.centre_x + a.lung_gap, cy, a.lung_rx, ry, edge=0.06)
    lungs = np.maximum(right, left)
    markings = 12.0 * _smooth_noise(rng, size, 24)
    c.pixels = c.pixels * (1.0 - lungs) + (a.lung_level + markings) * lungs
    spine = np.exp(-(((c.x - a.centre_x) / 0.03) ** 2)) * body
    c.pixels += 25.0 * spine
    before_heart = c.pixels.copy()
    heart_scale = (1.45, 1.25) if "Cardiomegaly" in labels else (1.0, 1.0)
    heart = c.ellipse(
        a.centre_x + 0.05,
        a.centre_y + 0.11,
        a.heart_rx * heart_scale[0],
        a.heart_ry * heart_scale[1],
        edge=0.06,
    )
    c.pixels = c.pixels * (1.0 - heart) + (a.body_level + 10.0) * heart
    if planted is not None and "Cardiomegaly" in labels:
        # The sign is the whole enlarged heart shadow (its extent, not only the added rim).
        planted["Cardiomegaly"] = np.abs(c.pixels - before_heart) + 40.0 * heart
    scene = _Scene(canvas=c, anatomy=a, rng=rng, right_lung=right, left_lung=left)
    for label in LABELS:
        if label in labels and label in _SIGNS:
            before = c.pixels.copy() if planted is not None else None
            _SIGNS[label](scene)
            if planted is not None and before is not None:
                planted[label] = np.abs(c.pixels - before)
    # Exposure differences between images, then detector blur and quantum noise.
    c.pixels = c.pixels * rng.uniform(0.9, 1.1) + rng.uniform(-8.0, 8.0)
    pixels = _blur(c.pixels, sigma=size / 256.0) + rng.normal(0.0, 5.0, (size, size))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def planted_region(change: FloatImage, fraction: float = 0.25) -> npt.NDArray[np.bool_]:
    """Pixels where a sign changed the image by at least ``fraction`` of its largest change."""
    peak = float(change.max())
    if peak <= 0.0:
        return np.zeros(change.shape, dtype=bool)
    return np.asarray(change >= fraction * peak)


def planted_example(
    label: str, seed: int, size: int = 256
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """One image with the sign of ``label`` alone, and the region where it was planted."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}")
    anatomy = _draw_anatomy(np.random.default_rng([seed, 1]))
    planted: dict[str, FloatImage] = {}
    pixels = render(anatomy, (label,), np.random.default_rng([seed, 2]), size, planted)
    return pixels, planted_region(planted[label])


def _draw_labels(rng: np.random.Generator) -> tuple[str, ...]:
    return tuple(label for label in LABELS if rng.random() < PREVALENCE[label])


def plan_records(images: int, seed: int, size: int) -> list[Record]:
    """Decide patients, follow-ups, labels and metadata for ``images`` images."""
    rng = np.random.default_rng([seed, 0])
    spacing = round(NIH_SPACING_MM * NIH_WIDTH / size, 3)
    records: list[Record] = []
    patient = 0
    while len(records) < images:
        patient += 1
        follow_ups = min(int(rng.geometric(0.45)), MAX_FOLLOW_UPS, images - len(records))
        age = int(rng.integers(18, 90))
        gender = "M" if rng.random() < 0.56 else "F"
        labels: tuple[str, ...] = ()
        for follow_up in range(follow_ups):
            if follow_up == 0 or rng.random() >= PERSISTENCE:
                labels = _draw_labels(rng)
            records.append(
                Record(
                    image_index=f"{patient:08d}_{follow_up:03d}.png",
                    labels=labels,
                    patient_id=str(patient),
                    follow_up=follow_up,
                    age=min(age + follow_up // 2, 95),
                    gender=gender,
                    view_position="PA" if rng.random() < 0.7 else "AP",
                    width=size,
                    height=size,
                    spacing_x=spacing,
                    spacing_y=spacing,
                )
            )
    return records


LAYOUTS: tuple[str, ...] = ("flat", "nih")
# NIH's download packs images into images_001 … images_012 of (at most) 10,000 images each.
ARCHIVE_SIZE = 10_000
# NIH's official test list holds 25,596 of 112,120 images (22.8 %), patient-disjoint from train_val.
TEST_FRACTION = 0.2


def image_folder(position: int, layout: str, archive_size: int = ARCHIVE_SIZE) -> Path:
    """Relative folder of the ``position``-th image (0-based) for a layout."""
    if layout == "flat":
        return Path("images")
    if layout == "nih":
        return Path(f"images_{position // archive_size + 1:03d}") / "images"
    raise ValueError(f"unknown layout {layout!r} (known: {', '.join(LAYOUTS)})")


def official_lists(
    records: list[Record], seed: int, test_fraction: float = TEST_FRACTION
) -> tuple[list[str], list[str]]:
    """(train_val, test) image names: whole patients go to test until ``test_fraction`` is met."""
    patients = sorted({r.patient_id for r in records}, key=int)
    order = np.random.default_rng([seed, 3]).permutation(len(patients))
    per_patient: dict[str, int] = {}
    for r in records:
        per_patient[r.patient_id] = per_patient.get(r.patient_id, 0) + 1
    test_patients: set[str] = set()
    taken = 0
    for i in order:
        if taken >= test_fraction * len(records):
            break
        test_patients.add(patients[i])
        taken += per_patient[patients[i]]
    test = sorted(r.image_index for r in records if r.patient_id in test_patients)
    train_val = sorted(r.image_index for r in records if r.patient_id not in test_patients)
    return train_val, test


def _render_record(task: tuple[Record, int, int, str]) -> None:
    record, seed, size, path = task
    patient = int(record.patient_id)
    anatomy = _draw_anatomy(np.random.default_rng([seed, 1, patient]))
    rng = np.random.default_rng([seed, 2, patient, record.follow_up])
    pixels = render(anatomy, record.labels, rng, size)
    Image.fromarray(pixels).save(path, compress_level=3)


def generate(
    out_dir: Path,
    *,
    images: int = 1200,
    seed: int = 7,
    size: int = 288,
    layout: str = "flat",
    archive_size: int = ARCHIVE_SIZE,
    test_fraction: float = TEST_FRACTION,
    workers: int = 1,
) -> list[Record]:
    """Write a dataset in the NIH layout under ``out_dir``; return the records.

    ``Data_Entry_2017.csv``, ``train_val_list.txt``, ``test_list.txt``, ``dataset.json`` and the
    PNGs, in ``images/`` (layout ``flat``) or ``images_001/images/`` … (layout ``nih``, at most
    ``archive_size`` per folder). ``workers`` > 1 renders in that many processes; the bytes
    written do not depend on it.
    """
    if images < 1:
        raise ValueError("images must be at least 1")
    if size < 64:
        raise ValueError("size must be at least 64")
    records = plan_records(images, seed, size)
    tasks: list[tuple[Record, int, int, str]] = []
    for position, record in enumerate(records):
        folder = out_dir / image_folder(position, layout, archive_size)
        if position == 0 or position % archive_size == 0:
            folder.mkdir(parents=True, exist_ok=True)
        tasks.append((record, seed, size, str(folder / record.image_index)))
    if workers > 1:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers) as pool:
            for _ in pool.imap_unordered(_render_record, tasks, chunksize=32):
                pass
    else:
        for task in tasks:
            _render_record(task)
    write_records(out_dir / CSV_NAME, records)
    train_val, test = official_lists(records, seed, test_fraction)
    write_list(out_dir / TRAIN_VAL_LIST, train_val)
    write_list(out_dir / TEST_LIST, test)
    info = {
        "name": DATASET_NAME,
        "kind": "synthetic",
        "generator": "thorax_trainer.synthetic",
        "seed": seed,
        "images": len(records),
        "patients": len({r.patient_id for r in records}),
        "imageSize": [size, size],
        "layout": layout,
        "testImages": len(test),
    }
    (out_dir / DATASET_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return records
