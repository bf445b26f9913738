"""``prepare``: decode every image once into a uint8 memory-mapped cache of wire images.

Training reads batches straight out of this cache (a page-cache-backed numpy memmap), so no PNG
is decoded in the hot loop and the data path costs a memory copy per image. The cache holds the
wire image of each CSV row whose file exists, in CSV order:

``<cache>/wire-256.u8``  raw uint8, ``count x 1 x 256 x 256``, C order
``<cache>/index.json``   format, wire size, the image names in order, the CSV rows left out by
                         reason, and a fingerprint of the CSV it was built from (written last:
                         a cache without it is incomplete)

A cache is reused while its fingerprint matches the dataset's CSV; otherwise it is rebuilt.
Decoding runs in ``workers`` processes that write into the memmap directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from thorax_trainer import _decode
from thorax_trainer.contract import WIRE_RESAMPLING, WIRE_SIZE
from thorax_trainer.dataset import CSV_NAME, DatasetError, Record, index_images, read_records

log = logging.getLogger(__name__)

CACHE_FORMAT = "thorax-wire-cache-v2"  # follows the wire recipe (contract.WIRE_RECIPE)
DEFAULT_CACHE = "wire-cache"
DATA_FILE = f"wire-{WIRE_SIZE}.u8"
INDEX_FILE = "index.json"
IMAGE_BYTES = WIRE_SIZE * WIRE_SIZE


@dataclass
class WireCache:
    """Read-only view of a prepared cache."""

    root: Path
    names: list[str]
    images: npt.NDArray[np.uint8]  # memmap [count, 1, 256, 256]
    # CSV rows the cache leaves out, name → reason (``imageMissing``, ``imageUnreadable``).
    left_out: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._position = {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def positions(self, records: Sequence[Record]) -> npt.NDArray[np.int64]:
        """Cache rows of ``records``; DatasetError names records the cache lacks."""
        missing = [r.image_index for r in records if r.image_index not in self._position]
        if missing:
            raise DatasetError(
                f"{self.root}: {len(missing)} images are not in the cache (e.g. {missing[0]})"
            )
        return np.fromiter(
            (self._position[r.image_index] for r in records), dtype=np.int64, count=len(records)
        )


def default_cache_dir(data: Path) -> Path:
    return data / DEFAULT_CACHE


def csv_fingerprint(data: Path) -> str:
    digest = hashlib.sha256()
    with (data / CSV_NAME).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def open_cache(cache_dir: Path) -> WireCache:
    """Open a complete cache; DatasetError when it is absent, incomplete or of another format."""
    index_path = cache_dir / INDEX_FILE
    if not index_path.is_file():
        raise DatasetError(f"{cache_dir}: no prepared cache (run `prepare`)")
    index: dict[str, Any] = json.loads(index_path.read_text(encoding="utf-8"))
    if index.get("format") != CACHE_FORMAT or index.get("wireSize") != WIRE_SIZE:
        raise DatasetError(f"{cache_dir}: cache of another format; prepare it again")
    names = list(index["names"])
    data_path = cache_dir / DATA_FILE
    expected = len(names) * IMAGE_BYTES
    if not data_path.is_file() or data_path.stat().st_size != expected:
        raise DatasetError(f"{cache_dir}: {DATA_FILE} is missing or truncated; prepare it again")
    images = np.memmap(
        data_path, dtype=np.uint8, mode="r", shape=(len(names), 1, WIRE_SIZE, WIRE_SIZE)
    )
    left_out = {
        name: reason for reason, listed in index.get("leftOut", {}).items() for name in listed
    }
    return WireCache(cache_dir, names, images, left_out)


def cache_matches(cache_dir: Path, data: Path) -> bool:
    index_path = cache_dir / INDEX_FILE
    if not index_path.is_file():
        return False
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return bool(
        index.get("csvSha256") == csv_fingerprint(data) and index.get("format") == CACHE_FORMAT
    )


def _compact(data_path: Path, present: list[Record], dropped: set[int]) -> list[Record]:
    """Close the gaps the ``dropped`` rows leave in the data file; returns the kept records."""
    kept = [i for i in range(len(present)) if i not in dropped]
    images = np.memmap(
        data_path, dtype=np.uint8, mode="r+", shape=(len(present), WIRE_SIZE, WIRE_SIZE)
    )
    for target, source in enumerate(kept):  # target <= source: a forward copy never overwrites
        if target != source:
            images[target] = images[source]
    images.flush()
    del images
    with data_path.open("r+b") as handle:
        handle.truncate(len(kept) * IMAGE_BYTES)
    return [present[i] for i in kept]


def prepare(
    data: Path,
    cache_dir: Path | None = None,
    *,
    workers: int = 0,
    skip_missing: bool = False,
    force: bool = False,
) -> WireCache:
    """Build (or reuse) the cache for ``data``; returns it opened.

    ``workers`` = 0 uses every CPU. ``skip_missing`` leaves out CSV rows whose file is absent
    (a partial NIH download) or cannot be decoded instead of failing; the index lists them by
    reason (``imageMissing``, ``imageUnreadable``) so that a run can report them.
    """
    cache_dir = default_cache_dir(data) if cache_dir is None else cache_dir
    if not force and cache_matches(cache_dir, data):
        cache = open_cache(cache_dir)
        log.info("cache %s is current (%d images)", cache_dir, len(cache))
        return cache
    started = time.monotonic()
    records = read_records(data / CSV_NAME)
    files = index_images(data)
    present = [r for r in records if r.image_index in files]
    if len(present) < len(records):
        missing = [r.image_index for r in records if r.image_index not in files]
        if not skip_missing:
            raise DatasetError(
                f"{data}: {len(missing)} of {len(records)} images not found (e.g. {missing[0]}); "
                "use --skip-missing to prepare the images that are present"
            )
        log.warning(
            "%d of %d CSV rows have no image file; leaving them out", len(missing), len(records)
        )
    if not present:
        raise DatasetError(f"{data}: no images to prepare")
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / INDEX_FILE).unlink(missing_ok=True)
    data_path = cache_dir / DATA_FILE
    with data_path.open("wb") as handle:
        handle.truncate(len(present) * IMAGE_BYTES)
    tasks = [(i, str(files[r.image_index])) for i, r in enumerate(present)]
    chunk = 64
    chunks = [tasks[i : i + chunk] for i in range(0, len(tasks), chunk)]
    processes = workers if workers > 0 else (os.cpu_count() or 1)
    done = 0
    next_report = 0.1
    failed: list[tuple[int, str]] = []
    if processes == 1:
        _decode.open_target(str(data_path), len(present))
        try:
            for chunk_failed in map(_decode.decode_chunk, chunks):
                failed += chunk_failed
        finally:
            _decode.close_target()
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(processes, _decode.open_target, (str(data_path), len(present))) as pool:
            for chunk_failed in pool.imap_unordered(_decode.decode_chunk, chunks):
                failed += chunk_failed
                done += chunk
                if done >= next_report * len(present):
                    log.info("prepare: %d/%d images", min(done, len(present)), len(present))
                    next_report += 0.1
    unreadable: list[str] = []
    if failed:
        failed.sort()
        position, reason = failed[0]
        if not skip_missing:
            raise DatasetError(
                f"{data}: {len(failed)} of {len(present)} images cannot be decoded (e.g. "
                f"{present[position].image_index}: {reason}); use --skip-missing to leave them out"
            )
        log.warning(
            "%d of %d images cannot be decoded (e.g. %s: %s); leaving them out",
            len(failed),
            len(present),
            present[position].image_index,
            reason,
        )
        unreadable = [present[position].image_index for position, _ in failed]
        present = _compact(data_path, present, {position for position, _ in failed})
    if not present:
        raise DatasetError(f"{data}: no image could be decoded")
    index = {
        "format": CACHE_FORMAT,
        "wireSize": WIRE_SIZE,
        "resampling": WIRE_RESAMPLING,
        "count": len(present),
        "csvSha256": csv_fingerprint(data),
        "data": str(data.resolve()),
        "names": [r.image_index for r in present],
        "leftOut": {
            reason: names
            for reason, names in (
                ("imageMissing", [r.image_index for r in records if r.image_index not in files]),
                ("imageUnreadable", unreadable),
            )
            if names
        },
    }
    tmp = cache_dir / (INDEX_FILE + ".tmp")
    tmp.write_text(json.dumps(index) + "\n", encoding="utf-8")
    tmp.replace(cache_dir / INDEX_FILE)
    seconds = time.monotonic() - started
    log.info(
        "prepared %d images into %s in %.1f s (%.0f images/s, %d process(es))",
        len(present),
        data_path,
        seconds,
        len(present) / max(seconds, 1e-9),
        processes,
    )
    return open_cache(cache_dir)
