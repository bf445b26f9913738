"""The single-process consumer's own logic: at-least-once offsets and the wire geometry.

.cache/bench-venv/bin/python -m pytest tools/bench/py   (scripts/bench.sh installs the venv)
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from consumer import Offsets, decode, geometry, to_wire


def test_only_the_acknowledged_prefix_of_a_partition_is_committed() -> None:
    offsets = Offsets("studies")
    a, b, c = offsets.add(0, 10), offsets.add(0, 11), offsets.add(0, 12)
    other = offsets.add(3, 7)
    b[1] = True  # 11 acknowledged before 10: nothing of partition 0 may be committed yet
    other[1] = True
    assert [(t.partition, t.offset) for t in offsets.committable()] == [(3, 8)]
    a[1] = True
    assert [(t.partition, t.offset) for t in offsets.committable()] == [(0, 12)]
    assert offsets.outstanding() == 1
    c[1] = True
    assert [(t.partition, t.offset) for t in offsets.committable()] == [(0, 13)]
    assert offsets.committable() == []


def test_geometry_rounds_half_up_as_math_round_and_crops_the_centre() -> None:
    # 2048 x 2500 at 0.125 is 256 x 312.5: Math.round makes 313 (Python's round would give 312).
    assert geometry(2048, 2500) == (256, 313, 0, 28)
    assert geometry(1024, 1024) == (256, 256, 0, 0)
    assert geometry(1841, 1955) == (256, 272, 0, 8)
    assert geometry(3000, 2000) == (384, 256, 64, 0)


def test_wire_image_is_256_square_uint8_from_a_float_plane() -> None:
    plane = np.full((2500, 2048), 300.0, np.float32)  # above 255: clipped, not wrapped
    wire = to_wire(Image.fromarray(plane, mode="F"))
    assert wire.shape == (256, 256) and wire.dtype == np.uint8
    assert int(wire.min()) == 255


def test_png_8_and_16_bit_give_the_same_wire_image() -> None:
    rng = np.random.default_rng(1)
    grey = cv2.GaussianBlur(rng.integers(0, 256, (300, 400)).astype(np.uint8), (0, 0), 3)
    png8 = cv2.imencode(".png", grey)[1].tobytes()
    png16 = cv2.imencode(".png", grey.astype(np.uint16) * 257)[1].tobytes()
    w8, w16 = decode(png8), decode(png16)
    assert w8.shape == (256, 256)
    assert int(np.abs(w8.astype(int) - w16.astype(int)).max()) <= 1
