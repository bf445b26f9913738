"""Source image to wire image: 8-bit grayscale, shorter side resized to 256, centre-cropped square.

This is the trainer's copy of what the preprocess service does before inference
(libs/imaging/src/grey-levels.ts and resize.ts; recipe ``thorax.wire.v2``, docs/imaging.md). The
two are kept equal by a parity test over the fixture corpus (≤ 1 grey level per pixel). Grey
levels are computed with the same floating-point operations, in the same order, as the
TypeScript; the resize is libvips' own (pyvips, the same libvips release as sharp's), called with
the arguments sharp passes. It runs outside the model graph; everything after it (crop to 224,
scaling, normalisation) is inside the graph.

Pipeline: decoded samples → 8-bit grey as stored, or display grey levels (float64, stored once as
float32) → ``vips_resize`` Lanczos-3 of the shorter side to ``size`` → centred square crop → for
float planes, ``v + 0.5`` truncated into 16 bits and clamped to 0..255.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import pyvips
from PIL import Image, ImageOps

from thorax_trainer.contract import WIRE_SIZE

UInt8Array = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
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


# libvips' kernel and reducing gap of the wire resize: the values sharp uses (docs/imaging.md).
WIRE_KERNEL: Final = "lanczos3"
WIRE_GAP: Final = 2.0


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """Shorter side to ``size`` with floor(x + 0.5) rounding, never below ``size``."""
    scale = size / min(width, height)
    return max(size, math.floor(width * scale + 0.5)), max(size, math.floor(height * scale + 0.5))


def _resize_crop(image: pyvips.Image, size: int) -> pyvips.Image:
    """What sharp's ``resize(w, h, {fit: 'fill'})`` then ``extract`` runs in libvips."""
    width, height = image.width, image.height
    target_w, target_h = resized_size(width, height, size)
    if target_w != width or target_h != height:
        image = image.resize(
            1.0 / (width / target_w),
            vscale=1.0 / (height / target_h),
            kernel=WIRE_KERNEL,
            gap=WIRE_GAP,
        )
    return image.crop((target_w - size) // 2, (target_h - size) // 2, size, size)


def _to_array(image: pyvips.Image, size: int) -> UInt8Array:
    data = image.write_to_memory()
    return np.frombuffer(data, dtype=np.uint8).reshape(size, size).copy()


def resize_grey8(plane: UInt8Array, size: int = WIRE_SIZE) -> UInt8Array:
    """8-bit grey as stored → wire image: libvips' uchar Lanczos-3, centred crop."""
    height, width = plane.shape
    data = np.ascontiguousarray(plane, dtype=np.uint8)
    image = pyvips.Image.new_from_memory(data.data, width, height, 1, "uchar")
    return _to_array(_resize_crop(image, size), size)


def resize_grey_plane(plane: FloatArray | Float32Array, size: int = WIRE_SIZE) -> UInt8Array:
    """Float grey levels (0..255) → wire image: float32 plane, libvips' float Lanczos-3, crop,
    then ``v + 0.5`` (linear) truncated into 16 bits (negatives → 0) and clamped to 255."""
    height, width = plane.shape
    data = np.ascontiguousarray(plane, dtype=np.float32)
    image = pyvips.Image.new_from_memory(data.data, width, height, 1, "float")
    rounded = _resize_crop(image, size).linear(1.0, 0.5).cast("ushort").cast("uchar")
    return _to_array(rounded, size)


def raster_to_grey(image: Image.Image) -> tuple[UInt8Array | FloatArray, str]:
    """A Pillow image (PNG/JPEG) → grey plane, EXIF orientation applied.

    8-bit grey is used as stored (uint8: resized as 8-bit samples); 16-bit grey keeps its
    precision and is windowed with the robust percentiles; colour becomes luma; alpha is flattened
    on black (float planes).
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
    if image.mode == "L":
        return samples, "as-stored"
    alpha = image.mode in ("LA", "RGBA")
    voi = "colour" if image.mode in ("RGB", "RGBA") else "as-stored"
    return samples_to_grey(samples, 255, alpha), voi


def to_wire(image: Image.Image, size: int = WIRE_SIZE) -> UInt8Array:
    """A Pillow image → its wire image (uint8, size x size)."""
    grey, _ = raster_to_grey(image)
    if grey.dtype == np.uint8:
        return resize_grey8(grey.astype(np.uint8, copy=False), size)
    return resize_grey_plane(grey.astype(np.float64, copy=False), size)


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
        return resize_grey_plane(grey, size)
    with Image.open(path) as image:
        image.load()
        return to_wire(image, size)
