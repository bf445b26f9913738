"""Device, precision, determinism and DistributedDataParallel plumbing.

The decisions are plain functions so they are unit-tested on a CPU-only machine:
``autocast_dtype`` picks bf16 autocast on a GPU that supports it (fp32 elsewhere unless asked),
``use_channels_last`` turns channels_last on for GPUs, and ``distributed_from_env`` reads the
variables ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; ``MASTER_ADDR`` and
``MASTER_PORT`` for many nodes) and chooses NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
SWITCHES: tuple[str, ...] = ("auto", "on", "off")


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:<local_rank>`` when CUDA is available, else ``cpu``."""
    if name == "auto":
        return (
            torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
        )
    device = torch.device(f"cuda:{local_rank}" if name == "cuda" else name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but torch sees no CUDA device")
    return device


def autocast_dtype(precision: str, device_type: str, bf16_supported: bool) -> torch.dtype | None:
    """The autocast dtype for a run, or None for plain fp32.

    ``auto``: bf16 on a CUDA device that supports it, fp32 otherwise (CPU bf16 is slow without
    AMX and is only used when asked for). ``bf16`` on a CUDA device without bf16 is an error.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} ({', '.join(PRECISIONS)})")
    if precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if device_type == "cuda" and bf16_supported else None
    if device_type == "cuda" and not bf16_supported:
        raise ValueError("bf16 requested but this GPU does not support bfloat16")
    return torch.bfloat16


def bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def use_channels_last(setting: str, device_type: str) -> bool:
    """``auto`` → channels_last on CUDA (tensor-core friendly), contiguous NCHW elsewhere."""
    if setting not in SWITCHES:
        raise ValueError(f"unknown channels-last setting {setting!r} ({', '.join(SWITCHES)})")
    return setting == "on" or (setting == "auto" and device_type == "cuda")


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world: int = 1
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_from_env(env: Mapping[str, str], cuda: bool) -> Distributed:
    """What ``torchrun`` asked for; a single process when ``WORLD_SIZE`` is absent or 1."""
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    rank = int(env["RANK"])
    local_rank = int(env.get("LOCAL_RANK", "0"))
    return Distributed(rank, local_rank, world, "nccl" if cuda else "gloo")


def init_distributed(device_name: str) -> tuple[Distributed, torch.device]:
    """Join the process group torchrun set up (if any) and pick this rank's device."""
    wants_cuda = device_name.startswith("cuda") or (
        device_name == "auto" and torch.cuda.is_available()
    )
    ctx = distributed_from_env(os.environ, wants_cuda)
    device = resolve_device(device_name, ctx.local_rank)
    if ctx.enabled and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=ctx.backend)
    return ctx, device


def shutdown_distributed(ctx: Distributed) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(ctx: Distributed) -> None:
    if ctx.enabled:
        dist.barrier()


def all_reduce_sum(ctx: Distributed, values: list[float], device: torch.device) -> list[float]:
    if not ctx.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.tolist()]


def all_gather_rows(ctx: Distributed, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Concatenate every rank's rows in rank order (same result on every rank)."""
    if not ctx.enabled:
        return rows
    gathered: list[object] = [None] * ctx.world
    dist.all_gather_object(gathered, rows)
    return np.concatenate([np.asarray(part, dtype=np.float32) for part in gathered])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party code may still use the global state
    torch.manual_seed(seed)


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """Deterministic kernels where PyTorch has them (warn, do not fail, where it has not)."""
    if deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic and device.type == "cuda"
