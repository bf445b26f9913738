from __future__ import annotations

import numpy as np
import pytest
import torch

from thorax_trainer.loader import NO_AUGMENTATION, Augmentation, BatchLoader, augment


def _data(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Image i is filled with i (mod 256); its target row holds i too, so pairs can be checked.
    images = np.zeros((n, 1, 256, 256), dtype=np.uint8)
    for i in range(n):
        images[i] = i % 256
    targets = np.repeat(np.arange(n, dtype=np.float32)[:, None], 14, axis=1)
    return images, np.arange(n, dtype=np.int64), targets


def _ids(loader: BatchLoader) -> list[list[int]]:
    batches = []
    for images, targets in loader:
        ids = [int(v) for v in images[:, 0, 0, 0]]
        assert ids == [int(v) for v in targets[:, 0]]  # image and target stay paired
        assert images.dtype == torch.uint8
        batches.append(ids)
    return batches


def _flat(batches: list[list[int]]) -> list[int]:
    return [i for batch in batches for i in batch]


def test_batches_depend_on_seed_and_epoch_only() -> None:
    images, positions, targets = _data(40)
    a = BatchLoader(images, positions, targets, 8, shuffle=True, drop_last=False, seed=1)
    b = BatchLoader(images, positions, targets, 8, shuffle=True, drop_last=False, seed=1, threads=3)
    first = _ids(a)
    assert first == _ids(b)
    assert sorted(_flat(first)) == list(range(40))
    a.set_epoch(1)
    assert _ids(a) != first
    c = BatchLoader(images, positions, targets, 8, shuffle=False, drop_last=False)
    assert _flat(_ids(c)) == list(range(40))


def test_drop_last_and_length() -> None:
    images, positions, targets = _data(21)
    loader = BatchLoader(images, positions, targets, 8, shuffle=True, drop_last=True)
    assert len(loader) == 2
    assert [len(b) for b in _ids(loader)] == [8, 8]
    keep = BatchLoader(images, positions, targets, 8, shuffle=True, drop_last=False)
    assert len(keep) == 3
    assert [len(b) for b in _ids(keep)] == [8, 8, 5]


def test_ranks_get_disjoint_equal_shards_of_one_permutation() -> None:
    images, positions, targets = _data(30)
    seen = []
    for rank in range(4):
        loader = BatchLoader(
            images, positions, targets, 4, shuffle=True, drop_last=False, seed=5, rank=rank, world=4
        )
        ids = _flat(_ids(loader))
        assert len(ids) == loader.samples_per_rank() == 8
        seen.append(ids)
    everything = _flat(seen)
    assert set(everything) == set(range(30))
    assert len(everything) == 32  # two samples repeat to pad 30 to 4 x 8
    with pytest.raises(ValueError, match="rank"):
        BatchLoader(images, positions, targets, 4, shuffle=True, drop_last=False, rank=4, world=4)


def test_loader_reads_through_positions() -> None:
    images, _, _ = _data(10)
    positions = np.array([7, 3], dtype=np.int64)
    targets = np.zeros((2, 14), dtype=np.float32)
    loader = BatchLoader(images, positions, targets, 2, shuffle=False, drop_last=False)
    ((batch, _),) = list(loader)
    assert sorted(int(v) for v in batch[:, 0, 0, 0]) == [3, 7]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_flip_and_brightness_follow_the_seed_recipe() -> None:
    n = 4000
    base = torch.zeros(n, 1, 8, 8, dtype=torch.uint8)
    base[:, :, :, :4] = 100  # left half bright
    out = augment(base, Augmentation(), _generator(0))
    assert out.dtype == torch.float32
    flipped = out[:, 0, 0, 7] > out[:, 0, 0, 0]
    assert 0.45 < flipped.float().mean().item() < 0.55
    # Brightness: the dark half rises by U[0, 32] in about half of the images, never more.
    shift = out[:, 0, 0, :].min(dim=1).values
    assert float(shift.max()) <= 32.0
    assert 0.45 < (shift > 0).float().mean().item() < 0.55
    assert float(shift[shift > 0].mean()) == pytest.approx(16.0, abs=1.5)
    # Same generator state, same result.
    torch.testing.assert_close(out, augment(base, Augmentation(), _generator(0)))


def test_brightness_saturates_and_no_augmentation_is_identity() -> None:
    white = torch.full((64, 1, 4, 4), 250, dtype=torch.uint8)
    out = augment(white, Augmentation(flip_p=0.0, brightness_p=1.0), _generator(1))
    assert float(out.max()) == 255.0
    images = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    assert torch.equal(augment(images, NO_AUGMENTATION, _generator(2)), images.float())
    assert not NO_AUGMENTATION.active()


def test_small_rotations_keep_the_centre_and_shape() -> None:
    image = torch.zeros(2, 1, 65, 65)
    image[:, :, 30:35, :] = 200.0  # a horizontal bar through the centre
    out = augment(image, Augmentation(0.0, 0.0, 0.0, rotation_degrees=10.0), _generator(3))
    assert out.shape == image.shape
    assert float(out[:, 0, 32, 32].min()) > 150.0
    assert not torch.equal(out, image)
