from __future__ import annotations

import numpy as np
from PIL import Image

from thorax_trainer.wire import to_wire


def test_landscape_image_is_resized_on_its_shorter_side_and_centre_cropped() -> None:
    # 512 x 256 (w x h): left quarter 0, middle half 128, right quarter 255.
    pixels = np.full((256, 512), 128, dtype=np.uint8)
    pixels[:, :128] = 0
    pixels[:, 384:] = 255
    wire = to_wire(Image.fromarray(pixels))
    assert wire.shape == (256, 256)
    assert wire.dtype == np.uint8
    # The shorter side is already 256, so the crop keeps exactly the middle half.
    assert np.all(wire == 128)


def test_portrait_image_is_downscaled_to_256_wide() -> None:
    pixels = np.zeros((1024, 512), dtype=np.uint8)
    pixels[:192] = 200  # top band: cropped away after the 512 → 256 downscale
    wire = to_wire(Image.fromarray(pixels))
    assert wire.shape == (256, 256)
    assert int(wire.max()) <= 1


def test_sixteen_bit_and_colour_inputs_become_grey8() -> None:
    deep = np.full((300, 300), 4000, dtype=np.uint16)
    deep[0, 0] = 0
    grey = to_wire(Image.fromarray(deep))
    assert grey.dtype == np.uint8
    assert int(np.median(grey)) == 255

    rgb = Image.new("RGB", (256, 256), (100, 100, 100))
    assert np.all(to_wire(rgb) == 100)
