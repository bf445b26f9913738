"""Training throughput: the full data path against the raw model step, side by side.

Three figures on the same device, model, optimiser, batch size and precision:

- ``raw``: the training step (forward, BCE, backward, Adam) on one synthetic batch that already
  sits on the device: the most this model can do here;
- ``train``: the same step fed by the real data path: wire cache (memmap) → loader threads →
  (pinned) host-to-device copy → augmentation on the device;
- ``loader``: the data path alone (gather, copy, augmentation, no model), its ceiling.

``train / raw`` near 1 means the data path is not the bottleneck. The raw and train phases are
timed in alternating rounds so that load from other processes on a shared machine hits both
alike; only the ratio is meant to travel between machines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from thorax_trainer.contract import CROP_SIZE, LABELS, WIRE_SIZE
from thorax_trainer.dataset import CSV_NAME, read_records
from thorax_trainer.loader import Augmentation, BatchLoader, augment
from thorax_trainer.model import DEFAULT_BACKBONE, LogitsView, build_model
from thorax_trainer.prepare import prepare
from thorax_trainer.runtime import (
    autocast_dtype,
    bf16_supported,
    configure_determinism,
    resolve_device,
    use_channels_last,
)
from thorax_trainer.train import train_step

log = logging.getLogger(__name__)


@dataclass
class BenchConfig:
    data: Path
    cache_dir: Path | None = None
    backbone: str = DEFAULT_BACKBONE
    network_size: int = CROP_SIZE
    batch_size: int = 16
    steps: int = 10
    warmup_steps: int = 3
    rounds: int = 3
    device: str = "auto"
    precision: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    loader_threads: int = 4
    prepare_workers: int = 0
    seed: int = 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _endless(loader: BatchLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def bench(config: BenchConfig) -> dict[str, Any]:
    device = resolve_device(config.device)
    configure_determinism(False, device)
    torch.manual_seed(config.seed)
    autocast = autocast_dtype(config.precision, device.type, bf16_supported(device))
    memory_format = (
        torch.channels_last if use_channels_last(config.channels_last, device.type) else None
    )
    cache = prepare(config.data, config.cache_dir, workers=config.prepare_workers)
    by_name = {r.image_index: r for r in read_records(config.data / CSV_NAME)}
    targets = np.stack([by_name[name].target() for name in cache.names])
    loader = BatchLoader(
        cache.images,
        np.arange(len(cache), dtype=np.int64),
        targets,
        config.batch_size,
        shuffle=True,
        drop_last=True,
        seed=config.seed,
        device=device,
        threads=config.loader_threads,
    )
    if len(loader) == 0:
        raise ValueError(f"{len(cache)} cached images are fewer than one batch")

    model = build_model(config.backbone, network_size=config.network_size).to(device)
    if memory_format is not None:
        model.to(memory_format=memory_format)
    view: nn.Module = LogitsView(model, memory_format)
    module: nn.Module = torch.compile(view) if config.compile else view  # type: ignore[assignment]
    module.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    augmentation = Augmentation()
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)

    n = config.batch_size
    raw_images = torch.randint(0, 256, (n, 1, WIRE_SIZE, WIRE_SIZE), device=device).float()
    raw_targets = (torch.rand(n, len(LABELS), device=device) < 0.1).float()
    no_augmentation = Augmentation(0.0, 0.0, 0.0, 0.0)
    batches = _endless(loader)

    def raw_steps(count: int) -> None:
        for _ in range(count):
            train_step(
                module,
                optimizer,
                raw_images,
                raw_targets,
                augmentation=no_augmentation,
                generator=generator,
                autocast=autocast,
            )

    def data_steps(count: int) -> None:
        for _ in range(count):
            images, batch_targets = next(batches)
            train_step(
                module,
                optimizer,
                images,
                batch_targets,
                augmentation=augmentation,
                generator=generator,
                autocast=autocast,
            )

    def loader_steps(count: int) -> None:
        for _ in range(count):
            images, _ = next(batches)
            augment(images, augmentation, generator)

    def timed(run: Any, count: int) -> float:
        _sync(device)
        started = time.perf_counter()
        run(count)
        _sync(device)
        return time.perf_counter() - started

    warm_started = time.perf_counter()
    timed(raw_steps, config.warmup_steps)
    timed(data_steps, config.warmup_steps)
    warmup_seconds = time.perf_counter() - warm_started
    raw_seconds = train_seconds = loader_seconds = 0.0
    for _ in range(config.rounds):
        raw_seconds += timed(raw_steps, config.steps)
        train_seconds += timed(data_steps, config.steps)
        loader_seconds += timed(loader_steps, config.steps)
    images = config.rounds * config.steps * n
    raw = images / raw_seconds
    trained = images / train_seconds
    return {
        "device": str(device)
        if device.type != "cuda"
        else f"{device} ({torch.cuda.get_device_name(device)})",
        "threads": torch.get_num_threads(),
        "backbone": config.backbone,
        "networkSize": config.network_size,
        "batchSize": n,
        "precision": "fp32" if autocast is None else str(autocast).removeprefix("torch."),
        "channelsLast": memory_format is not None,
        "compile": config.compile,
        "cachedImages": len(cache),
        "stepsTimed": config.rounds * config.steps,
        "warmupSeconds": round(warmup_seconds, 2),
        "rawImagesPerSecond": round(raw, 2),
        "trainImagesPerSecond": round(trained, 2),
        "loaderImagesPerSecond": round(images / loader_seconds, 2),
        "trainToRawRatio": round(trained / raw, 4),
    }
