"""GPU decisions, unit-tested on a CPU: autocast dtype, channels_last, torchrun's environment."""

from __future__ import annotations

import pytest
import torch

from thorax_trainer.runtime import (
    Distributed,
    autocast_dtype,
    distributed_from_env,
    resolve_device,
    use_channels_last,
)


@pytest.mark.parametrize(
    ("precision", "device", "bf16", "expected"),
    [
        ("auto", "cuda", True, torch.bfloat16),
        ("auto", "cuda", False, None),
        ("auto", "cpu", False, None),
        ("fp32", "cuda", True, None),
        ("bf16", "cuda", True, torch.bfloat16),
        ("bf16", "cpu", False, torch.bfloat16),
    ],
)
def test_autocast_dtype(precision: str, device: str, bf16: bool, expected: torch.dtype) -> None:
    assert autocast_dtype(precision, device, bf16) == expected


def test_autocast_dtype_refuses_what_cannot_run() -> None:
    with pytest.raises(ValueError, match="does not support bfloat16"):
        autocast_dtype("bf16", "cuda", False)
    with pytest.raises(ValueError, match="unknown precision"):
        autocast_dtype("fp16", "cuda", True)


def test_channels_last_is_on_for_gpus_by_default() -> None:
    assert use_channels_last("auto", "cuda")
    assert not use_channels_last("auto", "cpu")
    assert use_channels_last("on", "cpu")
    assert not use_channels_last("off", "cuda")
    with pytest.raises(ValueError, match="channels-last"):
        use_channels_last("yes", "cuda")


def test_distributed_settings_come_from_torchrun_variables() -> None:
    assert distributed_from_env({}, cuda=True) == Distributed()
    assert not Distributed().enabled
    assert distributed_from_env({"WORLD_SIZE": "1", "RANK": "0"}, cuda=True) == Distributed()
    gpu = distributed_from_env({"WORLD_SIZE": "16", "RANK": "9", "LOCAL_RANK": "1"}, cuda=True)
    assert gpu == Distributed(rank=9, local_rank=1, world=16, backend="nccl")
    assert gpu.enabled
    assert not gpu.is_main
    cpu = distributed_from_env({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, cuda=False)
    assert cpu.backend == "gloo"
    assert cpu.is_main


def test_resolve_device_on_a_cpu_machine() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")
    else:
        assert resolve_device("cuda", local_rank=0) == torch.device("cuda:0")
