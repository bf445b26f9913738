"""DICOM to display grey levels, the way the preprocess service does it (libs/imaging).

pydicom reads the file; pylibjpeg (libjpeg, OpenJPEG) decodes JPEG lossless, JPEG-LS and
JPEG 2000, Pillow (libjpeg-turbo, the library sharp uses) decodes JPEG baseline/extended, and
pydicom itself decodes RLE. Only the first frame is used. The grey-level arithmetic is shared with
PNG/JPEG in wire.py: stored value → modality (LUT or rescale) → VOI (LUT, window, else robust
percentiles) → MONOCHROME1 inverted; colour → luma; YBR_FULL keeps its Y plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pixel_array

from thorax_trainer.wire import (
    FloatArray,
    IntArray,
    Lut,
    Window,
    WireError,
    monochrome_to_grey,
    samples_to_grey,
    usable_window,
)

JPEG_8BIT = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}
NATIVE_OR_RLE = {
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.5",
}
MONOCHROME = {"MONOCHROME1", "MONOCHROME2"}


@dataclass(frozen=True)
class DicomGrey:
    grey: FloatArray
    frames: int
    photometric_interpretation: str
    voi: str


def read_dicom(source: Path | bytes) -> Dataset:
    """Read a Part 10 file, or a dataset without the preamble."""
    handle: Any = BytesIO(source) if isinstance(source, bytes) else source
    return pydicom.dcmread(handle, force=True)


def _stored(values: np.ndarray[Any, Any], bits_stored: int, signed: bool) -> IntArray:
    """Mask to Bits Stored and sign-extend when Pixel Representation is 1."""
    mask = (1 << bits_stored) - 1
    out = values.astype(np.int64) & mask
    if signed:
        sign = 1 << (bits_stored - 1)
        out = np.where(out >= sign, out - 2 * sign, out)
    return out


def _lut(ds: Dataset, keyword: str) -> Lut | None:
    sequence = ds.get(keyword)
    if not sequence:
        return None
    item = sequence[0]
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 65536
    if int(ds.get("PixelRepresentation", 0)) == 1 and first >= 0x8000:
        first -= 0x10000
    raw = item.LUTData
    data = (
        np.frombuffer(raw, dtype="<u2")
        if isinstance(raw, bytes)
        else np.asarray(raw, dtype=np.int64).ravel()
    )
    if data.size < entries:
        raise WireError(f"{keyword} declares {entries} entries, holds {data.size}")
    return Lut(first_mapped=first, bits=bits, data=data[:entries].astype(np.int64))


def _palette_rgb(ds: Dataset, indices: IntArray) -> tuple[FloatArray, int]:
    channels = []
    bits = 16
    for colour in ("Red", "Green", "Blue"):
        entries, first, bits = (
            int(v) for v in ds[f"{colour}PaletteColorLookupTableDescriptor"].value
        )
        entries = entries or 65536
        raw = ds[f"{colour}PaletteColorLookupTableData"].value
        data = np.frombuffer(raw, dtype="<u2" if bits == 16 else np.uint8)[:entries].astype(
            np.int64
        )
        channels.append(data[np.clip(indices - first, 0, data.size - 1)])
    return np.stack(channels, axis=-1).astype(np.float64), 2**bits - 1


def dicom_to_grey(ds: Dataset) -> DicomGrey:
    """The first frame of a DICOM dataset as display grey levels (float, 0..255)."""
    ts = str(ds.file_meta.TransferSyntaxUID)
    pi = str(ds.PhotometricInterpretation).upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    bits_stored = int(ds.BitsStored)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    options: dict[str, Any] = {"index": 0}
    if ts in JPEG_8BIT:
        options["decoding_plugin"] = "pillow"
    if ts in NATIVE_OR_RLE:
        options["raw"] = True  # keep YBR_FULL as Y, Cb, Cr
    samples = pixel_array(ds, **options)
    if pi in MONOCHROME:
        stored = _stored(samples, bits_stored, signed)
        window = None
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            function = "LINEAR"
        if "WindowCenter" in ds and "WindowWidth" in ds:
            center = _first(ds.WindowCenter)
            width = _first(ds.WindowWidth)
            if usable_window(center, width, function):
                window = Window(center, width, function)  # type: ignore[arg-type]
        grey, voi = monochrome_to_grey(
            stored,
            slope=float(ds.get("RescaleSlope", 1) or 1),
            intercept=float(ds.get("RescaleIntercept", 0) or 0),
            modality_lut=_lut(ds, "ModalityLUTSequence"),
            voi_lut=_lut(ds, "VOILUTSequence"),
            window=window,
            invert=pi == "MONOCHROME1",
        )
        return DicomGrey(grey, frames, pi, voi)
    if pi == "PALETTE COLOR":
        rgb, top = _palette_rgb(ds, _stored(samples, bits_stored, False))
        return DicomGrey(samples_to_grey(rgb, top, False), frames, pi, "colour")
    top = 2**bits_stored - 1
    if pi in ("YBR_FULL", "YBR_FULL_422") and ts in NATIVE_OR_RLE:
        y = (samples[..., 0].astype(np.int64) & top).astype(np.float64)
        return DicomGrey(y if top == 255 else y * 255 / top, frames, pi, "colour")
    if samples.ndim != 3 or samples.shape[2] != 3:
        raise WireError(f"{pi} frame with shape {samples.shape}")
    return DicomGrey(samples_to_grey(samples, top, False), frames, pi, "colour")


def _first(value: Any) -> float:
    try:
        return float(value[0]) if isinstance(value, pydicom.multival.MultiValue) else float(value)
    except (TypeError, ValueError):
        return float("nan")
