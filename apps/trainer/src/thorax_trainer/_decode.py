"""Decoding worker for ``prepare``: kept free of torch so that spawned processes start fast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from thorax_trainer.contract import WIRE_SIZE
from thorax_trainer.wire import load_wire

# Each decoding process opens the cache's memmap once.
_images: np.memmap[Any, np.dtype[np.uint8]] | None = None


def open_target(path: str, count: int) -> None:
    global _images
    _images = np.memmap(path, dtype=np.uint8, mode="r+", shape=(count, WIRE_SIZE, WIRE_SIZE))


def close_target() -> None:
    global _images
    if _images is not None:
        _images.flush()
    _images = None


def decode_chunk(chunk: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Write the wire image of each (row, path) into the open cache.

    Returns the rows that could not be decoded, each with the reason; their cache rows stay zero
    for ``prepare`` to refuse or leave out. Any error a decoder raises on a file's content counts
    (the files come from outside: truncated downloads, foreign formats, broken DICOM).
    """
    if _images is None:
        raise RuntimeError("open_target was not called in this process")
    failed: list[tuple[int, str]] = []
    for position, path in chunk:
        try:
            _images[position] = load_wire(Path(path))
        except Exception as error:
            failed.append((position, f"{type(error).__name__}: {error}"))
    _images.flush()
    return failed
