"""Raw PyTorch ceiling for tools/gpu/bench.sh: the same DenseNet-121 Thorax graph (uint8 wire
images in, 14 sigmoid scores out) in bfloat16 on one CUDA device, batch 256, timed after warm-up.
Prints one JSON line."""

from __future__ import annotations

import argparse
import json
import time

import torch

from thorax_trainer.model import build_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="densenet121")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA device")
    torch.manual_seed(0)
    # bf16 autocast (the in-graph preprocessing makes float32 from the uint8 wire image first),
    # channels-last convolutions: the usual fast path for a DenseNet on a recent NVIDIA GPU.
    model = build_model(args.backbone).eval().to("cuda", memory_format=torch.channels_last)
    images = torch.randint(0, 256, (args.batch, 1, 256, 256), dtype=torch.uint8, device="cuda")

    def run() -> torch.Tensor:
        return torch.sigmoid(model.logits(images, torch.channels_last))

    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(5):
            run()
        torch.cuda.synchronize()
        runs = 0
        started = time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            run()
            runs += 1
            if runs % 8 == 0:
                torch.cuda.synchronize()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "what": "pytorch-bf16",
                "device": torch.cuda.get_device_name(0),
                "torch": torch.__version__,
                "batch": args.batch,
                "images": runs * args.batch,
                "seconds": round(elapsed, 3),
                "imgPerSec": round(runs * args.batch / elapsed, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
