"""Source image to wire image: 8-bit grayscale, shorter side resized to 256, centre-cropped square.

This is the trainer's copy of what the preprocess service does before inference. It runs outside
the model graph; everything after it (crop to 224, scaling, normalisation) is inside the graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from thorax_trainer.contract import WIRE_SIZE

UInt8Array = npt.NDArray[np.uint8]


def to_grey8(image: Image.Image) -> Image.Image:
    """Decode any Pillow mode to 8-bit grayscale; 16-bit data is scaled by its own maximum."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        data = np.asarray(image, dtype=np.float64)
        peak = float(data.max()) if data.size else 0.0
        scaled = np.zeros(data.shape, dtype=np.uint8)
        if peak > 0:
            scaled = np.clip(np.rint(data * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled)
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGB")
    return image.convert("L")


def to_wire(image: Image.Image, size: int = WIRE_SIZE) -> UInt8Array:
    """Resize the shorter side to ``size`` (Lanczos-3) and centre-crop a square, as uint8 HxW."""
    grey = to_grey8(image)
    width, height = grey.size
    scale = size / min(width, height)
    new_width = max(size, round(width * scale))
    new_height = max(size, round(height * scale))
    if (new_width, new_height) != (width, height):
        grey = grey.resize((new_width, new_height), Image.Resampling.LANCZOS)
    left = (new_width - size) // 2
    top = (new_height - size) // 2
    grey = grey.crop((left, top, left + size, top + size))
    return np.asarray(grey, dtype=np.uint8).copy()


def load_wire(path: Path, size: int = WIRE_SIZE) -> UInt8Array:
    """Read an image file and return its wire image (uint8, size x size)."""
    with Image.open(path) as image:
        image.load()
        return to_wire(image, size)
