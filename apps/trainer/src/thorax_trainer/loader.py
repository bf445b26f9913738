"""Batches out of the wire cache, and the training augmentation.

``BatchLoader`` gathers batches from the uint8 memmap in background threads (numpy's fancy
indexing copies without holding the GIL), pins them when the target is a GPU and moves them with
``non_blocking`` copies. The order of batches depends only on the seed and the epoch, and under
DistributedDataParallel each rank takes every ``world``-th sample of the same permutation, so
ranks see disjoint shards of equal length.

Augmentation runs on the device, on whole batches, after the transfer: random horizontal flip
(p 0.5) and brightness +U[0, 32] grey levels (p 0.5), as the seed pipeline did, plus optional
small rotations. Evaluation never augments.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional as F  # noqa: N812
from torch.utils.data import Dataset

from thorax_trainer.contract import LABELS, WIRE_SIZE
from thorax_trainer.dataset import Record, resolve_image_paths
from thorax_trainer.wire import UInt8Array, load_wire

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Augmentation:
    flip_p: float = 0.5
    brightness_p: float = 0.5
    brightness_max: float = 32.0
    rotation_degrees: float = 0.0

    def active(self) -> bool:
        return self.flip_p > 0 or self.brightness_p > 0 or self.rotation_degrees > 0

    def to_json(self) -> dict[str, float]:
        return {
            "horizontalFlipP": self.flip_p,
            "brightnessP": self.brightness_p,
            "brightnessMax": self.brightness_max,
            "rotationDegrees": self.rotation_degrees,
        }


NO_AUGMENTATION = Augmentation(0.0, 0.0, 0.0, 0.0)


def augment(images: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """uint8 or float [N, 1, H, W] in [0, 255] → augmented float32 [N, 1, H, W] in [0, 255].

    ``generator`` must live on the images' device; the result is a function of the images and
    the generator state only.
    """
    device = images.device
    n = images.shape[0]
    out = images.to(torch.float32)
    if aug.rotation_degrees > 0:
        angle = (torch.rand(n, device=device, generator=generator) * 2 - 1) * math.radians(
            aug.rotation_degrees
        )
        cos, sin = torch.cos(angle), torch.sin(angle)
        zero = torch.zeros_like(cos)
        theta = torch.stack(
            [torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1
        )
        grid = F.affine_grid(theta, list(out.shape), align_corners=False)
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if aug.flip_p > 0:
        flip = torch.rand(n, device=device, generator=generator) < aug.flip_p
        out = torch.where(flip.view(n, 1, 1, 1), out.flip(-1), out)
    if aug.brightness_p > 0 and aug.brightness_max > 0:
        apply = torch.rand(n, device=device, generator=generator) < aug.brightness_p
        shift = torch.rand(n, device=device, generator=generator) * aug.brightness_max
        out = out + (apply * shift).view(n, 1, 1, 1)
    return out.clamp_(0.0, 255.0)


class BatchLoader:
    """Seeded, sharded, prefetching batches of (uint8 images, float targets) on ``device``."""

    def __init__(
        self,
        images: npt.NDArray[np.uint8],
        positions: npt.NDArray[np.int64],
        targets: npt.NDArray[np.float32],
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        device: torch.device | None = None,
        threads: int = 2,
        prefetch: int = 4,
    ) -> None:
        if positions.shape[0] != targets.shape[0]:
            raise ValueError("positions and targets differ in length")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world of {world}")
        self.images = images
        self.positions = positions
        self.targets = targets
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world = world
        self.device = device or torch.device("cpu")
        self.threads = max(1, threads)
        self.prefetch = max(1, prefetch)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> npt.NDArray[np.int64]:
        n = self.positions.shape[0]
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        else:
            order = np.arange(n)
        if self.world > 1:
            per_rank = math.ceil(n / self.world)
            order = np.resize(order, per_rank * self.world)  # repeats from the start to pad
            order = order[self.rank :: self.world]
        return order.astype(np.int64)

    def samples_per_rank(self) -> int:
        n = int(self.positions.shape[0])
        return math.ceil(n / self.world) if self.world > 1 else n

    def __len__(self) -> int:
        n = self.samples_per_rank()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _gather(self, chosen: npt.NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.positions[chosen]
        order = np.argsort(rows, kind="stable")  # ascending rows read the memmap sequentially
        images = torch.from_numpy(np.ascontiguousarray(self.images[rows[order]]))
        targets = torch.from_numpy(np.ascontiguousarray(self.targets[chosen[order]]))
        if self.device.type == "cuda":
            images, targets = images.pin_memory(), targets.pin_memory()
        return images, targets

    def __iter__(self) -> Iterator[Batch]:
        order = self._order()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if not batches:
            return
        non_blocking = self.device.type == "cuda"
        with ThreadPoolExecutor(self.threads, thread_name_prefix="thorax-loader") as pool:
            pending: deque[Future[tuple[torch.Tensor, torch.Tensor]]] = deque()
            upcoming = iter(batches)
            for chosen in upcoming:
                pending.append(pool.submit(self._gather, chosen))
                if len(pending) >= self.prefetch:
                    break
            while pending:
                images, targets = pending.popleft().result()
                chosen_next = next(upcoming, None)
                if chosen_next is not None:
                    pending.append(pool.submit(self._gather, chosen_next))
                yield (
                    images.to(self.device, non_blocking=non_blocking),
                    targets.to(self.device, non_blocking=non_blocking),
                )


class WireImageDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """(uint8 wire image [1, 256, 256], float target [14]) pairs.

    With ``preload`` every image is decoded once into memory (64 KiB each at 256²), which is the
    right choice for small datasets; without it images are decoded on access.
    """

    def __init__(self, root: Path, records: Sequence[Record], *, preload: bool = True) -> None:
        self.records = list(records)
        self.paths = resolve_image_paths(root, self.records)
        self.targets = torch.from_numpy(
            np.stack([r.target() for r in self.records])
            if self.records
            else np.zeros((0, len(LABELS)), dtype=np.float32)
        )
        self._cache: torch.Tensor | None = None
        if preload:
            self._cache = torch.from_numpy(self._load_all())

    def _load_all(self) -> UInt8Array:
        images = np.empty((len(self.paths), 1, WIRE_SIZE, WIRE_SIZE), dtype=np.uint8)
        for i, path in enumerate(self.paths):
            images[i, 0] = load_wire(path)
        return images

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is not None:
            image = self._cache[index]
        else:
            image = torch.from_numpy(load_wire(self.paths[index])).unsqueeze(0)
        return image, self.targets[index]

    def images(self) -> torch.Tensor:
        """All images as one uint8 tensor [n, 1, 256, 256]."""
        if self._cache is not None:
            return self._cache
        return torch.from_numpy(self._load_all())
