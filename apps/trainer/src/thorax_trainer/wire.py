"""Source image to wire image: 8-bit grayscale, shorter side resized to 256, centre-cropped square.

This is the trainer's copy of what the preprocess service does before inference
(libs/imaging/src/grey-levels.ts and resize.ts; docs/imaging.md). The two are kept equal by a
parity test over the fixture corpus (≤ 1 grey level per pixel): every step below performs the same
floating-point operations, in the same order, as the TypeScript. It runs outside the model graph;
everything after it (crop to 224, scaling, normalisation) is inside the graph.

Pipeline: decoded samples → display grey levels (float, 0..255) → Lanczos-3 resize of the shorter
side to ``size`` → centred square crop → floor(v + 0.5) clamped to 0..255.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from thorax_trainer.contract import WIRE_SIZE

UInt8Array = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Lower and upper percentiles of the robust min/max used when an image carries no VOI.
ROBUST_PERCENTILES: tuple[float, float] = (0.5, 99.5)

VoiFunction = Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"]


class WireError(ValueError):
    """An image the wire recipe cannot turn into a wire image."""


@dataclass(frozen=True)
class Lut:
    """A DICOM lookup table: stored value ``first_mapped`` maps to entry 0."""

    first_mapped: int
    bits: int
    data: IntArray


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: VoiFunction = "LINEAR"


def usable_window(center: float, width: float, function: str) -> bool:
    """DICOM: width ≥ 1 (LINEAR, SIGMOID) or > 0 (LINEAR_EXACT), both finite."""
    if not (math.isfinite(center) and math.isfinite(width)):
        return False
    return width > 0 if function == "LINEAR_EXACT" else width >= 1


def _look_up(lut: Lut, values: FloatArray) -> FloatArray:
    index = np.floor(values).astype(np.int64) - lut.first_mapped
    index = np.clip(index, 0, len(lut.data) - 1)
    return lut.data[index].astype(np.float64)


def _clamp255(values: FloatArray) -> FloatArray:
    return np.clip(values, 0.0, 255.0)


def apply_window(x: FloatArray, window: Window) -> FloatArray:
    """DICOM PS3.3 C.11.2.1.2 window functions onto 0..255 (continuous, not rounded)."""
    c, w = window.center, window.width
    if window.function == "SIGMOID":
        return np.asarray(255.0 / (1.0 + np.exp((-4.0 * (x - c)) / w)), dtype=np.float64)
    if window.function == "LINEAR_EXACT":
        return _clamp255(((x - c) / w + 0.5) * 255.0)
    low = c - 0.5 - (w - 1) / 2
    high = c - 0.5 + (w - 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    return np.where(x <= low, 0.0, np.where(x > high, 255.0, inner))


def _percentiles(values: FloatArray, qs: tuple[float, float]) -> tuple[float, float]:
    """Linear-interpolation percentiles: position q * (n - 1) / 100 over the sorted values."""
    n = values.size
    flat = values.ravel()
    out: list[float] = []
    for q in qs:
        pos = q * (n - 1) / 100
        k = math.floor(pos)
        ranks = [k, k + 1] if k + 1 < n else [k]
        part = np.partition(flat, ranks)
        a = float(part[k])
        if k + 1 >= n:
            out.append(a)
        else:
            out.append(a + (float(part[k + 1]) - a) * (pos - k))
    return out[0], out[1]


def monochrome_to_grey(
    stored: IntArray,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    modality_lut: Lut | None = None,
    voi_lut: Lut | None = None,
    window: Window | None = None,
    invert: bool = False,
) -> tuple[FloatArray, str]:
    """Stored values → modality → VOI (LUT, else window, else robust percentiles) → 0..255."""
    values = stored.astype(np.float64)
    modality = _look_up(modality_lut, values) if modality_lut else values * slope + intercept
    voi: str
    if voi_lut is not None:
        top = 2**voi_lut.bits - 1
        grey = _look_up(voi_lut, modality) * 255 / top
        voi = "lut"
    elif window is not None:
        grey = apply_window(modality, window)
        voi = "window"
    else:
        lo, hi = _percentiles(modality, ROBUST_PERCENTILES)
        if not hi > lo:
            lo, hi = _percentiles(modality, (0.0, 100.0))
        if hi > lo:
            grey = _clamp255((modality - lo) / (hi - lo) * 255)
            voi = "percentiles"
        else:
            grey = np.zeros(values.shape, dtype=np.float64)
            voi = "none"
    if invert:
        grey = 255 - grey
    return grey, voi


def samples_to_grey(samples: npt.NDArray[np.generic], max_value: float, alpha: bool) -> FloatArray:
    """HxW or HxWxC samples → grey: alpha flattened on black, colour to luma (299, 587, 114 ‰)."""
    data = samples.astype(np.float64)
    if data.ndim == 2:
        data = data[:, :, None]
    channels = data.shape[2]
    colour = channels - (1 if alpha else 0) >= 3
    if colour:
        r, g, b = data[:, :, 0], data[:, :, 1], data[:, :, 2]
        if alpha:
            a = data[:, :, 3]
            r = r * a / max_value
            g = g * a / max_value
            b = b * a / max_value
        grey = (299 * r + 587 * g + 114 * b) / 1000
    else:
        grey = data[:, :, 0]
        if alpha:
            grey = grey * data[:, :, 1] / max_value
    return grey if max_value == 255 else grey * 255 / max_value


def _lanczos3(x: float) -> float:
    if x < -3 or x >= 3:
        return 0.0
    return _sinc(x) * _sinc(x / 3)


def _sinc(x: float) -> float:
    if x == 0:
        return 1.0
    px = x * math.pi
    return math.sin(px) / px


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """Shorter side to ``size`` with floor(x + 0.5) rounding, never below ``size``."""
    scale = size / min(width, height)
    return max(size, math.floor(width * scale + 0.5)), max(size, math.floor(height * scale + 0.5))


@lru_cache(maxsize=64)
def _axis_taps(in_size: int, out_size: int, first: int, count: int) -> tuple[IntArray, FloatArray]:
    """Input indices and weights of output positions [first, first + count) (cached, read-only)."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 3 * filter_scale
    taps = math.ceil(support) * 2 + 1
    index = np.zeros((count, taps), dtype=np.int64)
    weight = np.zeros((count, taps), dtype=np.float64)
    for o in range(count):
        center = (first + o + 0.5) * scale
        start = max(0, math.trunc(center - support + 0.5))
        stop = min(in_size, math.trunc(center + support + 0.5))
        total = 0.0
        for x in range(start, stop):
            if x - start >= taps:
                break
            w = _lanczos3((x - center + 0.5) / filter_scale)
            index[o, x - start] = x
            weight[o, x - start] = w
            total += w
        if total != 0:
            weight[o] = weight[o] / total
    index.flags.writeable = False
    weight.flags.writeable = False
    return index, weight


def resize_crop_to_grey8(plane: FloatArray, size: int = WIRE_SIZE) -> UInt8Array:
    """Lanczos-3 shorter-side resize, centred crop, floor(v + 0.5) clamped, as uint8 size x size."""
    height, width = plane.shape
    target_w, target_h = resized_size(width, height, size)
    left = (target_w - size) // 2
    top = (target_h - size) // 2
    plane = np.ascontiguousarray(plane, dtype=np.float64)
    if target_w == width:
        horizontal = plane[:, left : left + size].copy()
    else:
        index, weight = _axis_taps(width, target_w, left, size)
        horizontal = np.zeros((height, size), dtype=np.float64)
        for t in range(index.shape[1]):
            horizontal += weight[:, t][None, :] * plane[:, index[:, t]]
    if target_h == height:
        result = horizontal[top : top + size, :]
    else:
        index, weight = _axis_taps(height, target_h, top, size)
        result = np.zeros((size, size), dtype=np.float64)
        for t in range(index.shape[1]):
            result += weight[:, t][:, None] * horizontal[index[:, t], :]
    return np.clip(np.floor(result + 0.5), 0, 255).astype(np.uint8)


def raster_to_grey(image: Image.Image) -> tuple[FloatArray, str]:
    """A Pillow image (PNG/JPEG) → display grey levels, EXIF orientation applied.

    8-bit grey is used as stored; 16-bit grey keeps its precision and is windowed with the robust
    percentiles; colour becomes luma; alpha is flattened on black.
    """
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        stored = np.asarray(image).astype(np.int64)
        return monochrome_to_grey(stored)
    if mode == "CMYK":
        raise WireError("CMYK images are not decoded")
    if mode in ("P", "PA"):
        image = image.convert("RGBA" if mode == "PA" or "transparency" in image.info else "RGB")
    elif mode == "1":
        image = image.convert("L")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")
    samples = np.asarray(image)
    alpha = image.mode in ("LA", "RGBA")
    voi = "colour" if image.mode in ("RGB", "RGBA") else "as-stored"
    return samples_to_grey(samples, 255, alpha), voi


def to_wire(image: Image.Image, size: int = WIRE_SIZE) -> UInt8Array:
    """A Pillow image → its wire image (uint8, size x size)."""
    grey, _ = raster_to_grey(image)
    return resize_crop_to_grey8(grey, size)


def is_dicom(head: bytes) -> bool:
    """DICOM Part 10 ("DICM" at 128) or a dataset without the preamble (group 0002/0008 first)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    return len(head) >= 8 and head[1] == 0 and head[0] in (0x02, 0x08) and head[3] == 0


def load_wire(path: Path, size: int = WIRE_SIZE) -> UInt8Array:
    """Read an image file (DICOM, PNG or JPEG) and return its wire image (uint8, size x size)."""
    with path.open("rb") as handle:
        head = handle.read(132)
    if is_dicom(head):
        from thorax_trainer.dicom import dicom_to_grey, read_dicom

        grey = dicom_to_grey(read_dicom(path)).grey
        return resize_crop_to_grey8(grey, size)
    with Image.open(path) as image:
        image.load()
        return to_wire(image, size)
