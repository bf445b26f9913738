"""The trainer's DICOM path (dicom.py + wire.py) on the repo's generated fixture corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from thorax_trainer.dicom import dicom_to_grey, read_dicom
from thorax_trainer.wire import Window, apply_window, load_wire, monochrome_to_grey

FIXTURES = Path(__file__).resolve().parents[3] / "test" / "fixtures" / "imaging"
LOSSLESS = [
    "mono2-deflated.dcm",
    "mono2-big-endian.dcm",
    "mono2-no-preamble.dcm",
    "jpeg-lossless-sv1.dcm",
    "jpeg-lossless-p14.dcm",
    "jpeg-ls-lossless.dcm",
    "rle-mono2.dcm",
    "j2k-lossless.dcm",
    "mono2-multiframe.dcm",
    "jpeg-ls-multiframe.dcm",
]


def wire(name: str) -> np.ndarray:
    return load_wire(FIXTURES / "valid" / name)


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_encodings_of_one_image_give_the_same_wire_image(name: str) -> None:
    assert np.array_equal(wire(name), wire("mono2-explicit-le-window.dcm"))


def test_monochrome1_is_inverted() -> None:
    difference = wire("mono1-explicit-le.dcm").astype(int) - wire("mono2-explicit-le-window.dcm")
    assert int(np.abs(difference).max()) <= 1


def test_voi_choice_follows_the_header() -> None:
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    for entry in manifest["valid"]:
        if entry["file"].endswith(".dcm"):
            grey = dicom_to_grey(read_dicom(FIXTURES / entry["file"]))
            assert grey.voi == entry["voi"], entry["file"]
            assert grey.frames == entry.get("frames", 1)
            assert grey.grey.min() >= 0
            assert grey.grey.max() <= 255


def test_window_functions() -> None:
    x = np.array([0.0, 1000.0, 1999.5, 3000.0, 5000.0])
    linear = apply_window(x, Window(2000, 2001, "LINEAR"))
    assert linear[0] == 0
    assert linear[-1] == 255
    assert linear[2] == pytest.approx(127.5)
    exact = apply_window(x, Window(2000, 2000, "LINEAR_EXACT"))
    assert exact[1] == 0
    assert exact[3] == 255
    sigmoid = apply_window(np.array([2000.0]), Window(2000, 500, "SIGMOID"))
    assert sigmoid[0] == pytest.approx(127.5)


def test_percentiles_fall_back_to_min_max_and_flat_images_stay_black() -> None:
    stored = np.full((100, 100), 4000, dtype=np.int64)
    stored[0, 0] = 0
    grey, voi = monochrome_to_grey(stored)
    assert voi == "percentiles"
    assert grey[1, 1] == 255
    assert grey[0, 0] == 0
    flat, voi = monochrome_to_grey(np.full((10, 10), 7, dtype=np.int64))
    assert voi == "none"
    assert not flat.any()


def test_sixteen_bit_png_keeps_precision_until_the_window() -> None:
    twelve_bit = wire("grey16-12bit-values.png")
    assert int(twelve_bit.max()) - int(twelve_bit.min()) > 200
