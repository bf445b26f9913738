"""Export an UNTRAINED backbone in the Thorax model contract, for throughput benchmarks only.

The serving benchmark's default model is tiny, so per-record service overhead weighs more than
it would with the CheXNet network. This writes DenseNet-121 (or ResNet-50) with random weights
and the metadata of a reference model, so `npm run bench:inference` can be pointed at it:

    apps/trainer/.venv/bin/python tools/bench/scripts/export_untrained.py densenet121 .data/bench-models
    MODEL_DIR=.data/bench-models/densenet121 npm run bench:inference

Its scores are meaningless; it must never be served.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnx
import torch

from thorax_trainer.export import attach_metadata, to_onnx
from thorax_trainer.model import build_model


def main(backbone: str, out_root: str, reference: str = "models/thorax-tiny-cnn") -> None:
    ref_dir = sorted(Path(reference).iterdir())[-1]
    metadata = json.loads((ref_dir / "model.json").read_text())["metadata"]
    props = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    props["thorax.model.name"] = f"{backbone}-untrained-bench"
    props["thorax.model.version"] = "1"
    props["thorax.training"] = json.dumps({"note": "random weights, for throughput benchmarks only"})
    props.pop("thorax.auroc.test", None)
    props["thorax.auroc.validation"] = "{}"
    torch.manual_seed(0)
    proto = attach_metadata(to_onnx(build_model(backbone)), props)
    out = Path(out_root) / backbone / "1" / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(out))
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
