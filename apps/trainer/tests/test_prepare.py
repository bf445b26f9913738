from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from thorax_trainer.dataset import CSV_NAME, DatasetError, index_images, read_records
from thorax_trainer.prepare import DATA_FILE, INDEX_FILE, open_cache, prepare
from thorax_trainer.wire import load_wire


def test_cache_holds_the_wire_image_of_every_row(synthetic_dir: Path, tmp_path: Path) -> None:
    cache = prepare(synthetic_dir, tmp_path / "cache", workers=1)
    records = read_records(synthetic_dir / CSV_NAME)
    assert cache.names == [r.image_index for r in records]
    assert cache.images.shape == (60, 1, 256, 256)
    assert cache.images.dtype == np.uint8
    files = index_images(synthetic_dir)
    for i in (0, 17, 59):
        np.testing.assert_array_equal(cache.images[i, 0], load_wire(files[cache.names[i]]))
    positions = cache.positions([records[5], records[2]])
    assert positions.tolist() == [5, 2]


def test_cache_is_reused_while_the_csv_is_unchanged(synthetic_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    first = prepare(data, workers=2)
    stamp = (data / "wire-cache" / DATA_FILE).stat().st_mtime_ns
    assert prepare(data).names == first.names
    assert (data / "wire-cache" / DATA_FILE).stat().st_mtime_ns == stamp
    # Drop a row: the fingerprint changes and the cache is rebuilt without it.
    lines = (data / CSV_NAME).read_text(encoding="utf-8").splitlines()
    (data / CSV_NAME).write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    assert len(prepare(data)) == 59


def test_missing_images_fail_unless_skipped(synthetic_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    shutil.rmtree(data / "wire-cache", ignore_errors=True)
    gone = sorted((data / "images").iterdir())[:3]
    for path in gone:
        path.unlink()
    with pytest.raises(DatasetError, match="3 of 60 images not found"):
        prepare(data, workers=1)
    cache = prepare(data, workers=1, skip_missing=True)
    assert len(cache) == 57
    assert not {p.name for p in gone} & set(cache.names)
    with pytest.raises(DatasetError, match="not in the cache"):
        cache.positions(read_records(data / CSV_NAME))


def test_undecodable_images_fail_unless_skipped_and_are_listed(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data, ignore=shutil.ignore_patterns("wire-cache"))
    records = read_records(data / CSV_NAME)
    files = index_images(data)
    broken = [records[i].image_index for i in (0, 7, 30)]
    for name in broken:
        files[name].write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match=r"3 of 60 images cannot be decoded \(e.g. .*Error"):
        prepare(data, workers=1)
    files[records[45].image_index].unlink()
    for workers in (1, 2):
        cache = prepare(data, tmp_path / f"cache-{workers}", workers=workers, skip_missing=True)
        assert len(cache) == 56
        assert cache.names == [
            r.image_index for i, r in enumerate(records) if i not in (0, 7, 30, 45)
        ]
        assert cache.left_out == {
            **dict.fromkeys(broken, "imageUnreadable"),
            records[45].image_index: "imageMissing",
        }
        # The rows behind each gap moved up intact.
        for i in (0, 6, 27, 55):
            expected = load_wire(files[cache.names[i]])
            np.testing.assert_array_equal(cache.images[i, 0], expected)
        assert (tmp_path / f"cache-{workers}" / DATA_FILE).stat().st_size == 56 * 256 * 256
        reopened = open_cache(tmp_path / f"cache-{workers}")
        assert reopened.left_out == cache.left_out


def test_incomplete_caches_are_refused(synthetic_dir: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    prepare(synthetic_dir, cache_dir, workers=1)
    with (cache_dir / DATA_FILE).open("r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(DatasetError, match="truncated"):
        open_cache(cache_dir)
    (cache_dir / INDEX_FILE).unlink()
    with pytest.raises(DatasetError, match="no prepared cache"):
        open_cache(cache_dir)
