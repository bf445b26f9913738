from __future__ import annotations

from pathlib import Path

from thorax_trainer.bench import BenchConfig, bench


def test_bench_reports_the_data_path_against_the_raw_step(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    result = bench(
        BenchConfig(
            data=synthetic_dir,
            cache_dir=tmp_path / "cache",
            backbone="tiny-cnn",
            network_size=56,
            batch_size=8,
            steps=2,
            warmup_steps=1,
            rounds=1,
            device="cpu",
            loader_threads=1,
            prepare_workers=1,
        )
    )
    assert result["device"] == "cpu"
    assert result["stepsTimed"] == 2
    assert result["cachedImages"] == 60
    for key in ("rawImagesPerSecond", "trainImagesPerSecond", "loaderImagesPerSecond"):
        assert result[key] > 0
    ratio = result["trainImagesPerSecond"] / result["rawImagesPerSecond"]
    assert abs(result["trainToRawRatio"] - ratio) < 0.01
