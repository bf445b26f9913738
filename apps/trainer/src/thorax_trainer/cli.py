"""Command line: ``python -m thorax_trainer {synth,train,export,verify}``."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from thorax_trainer.contract import ContractError
from thorax_trainer.dataset import CSV_NAME, DATASET_INFO, DatasetError

log = logging.getLogger("thorax_trainer")


def _fractions(text: str) -> tuple[float, float, float]:
    parts = [float(p) for p in text.split(",")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(
            "expected three comma-separated fractions, e.g. 0.7,0.2,0.1"
        )
    return parts[0], parts[1], parts[2]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thorax_trainer",
        description="Train the Thorax chest X-ray classifier; export it as a contract ONNX model.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="generate a synthetic dataset in the NIH layout")
    synth.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    synth.add_argument("--images", type=int, default=1200)
    synth.add_argument("--size", type=int, default=288, help="image width and height in pixels")
    synth.add_argument("--seed", type=int, default=7)
    synth.add_argument(
        "--clean", action="store_true", help="delete an existing dataset in --out first"
    )

    train = commands.add_parser("train", help="train on a dataset directory in the NIH layout")
    train.add_argument("--data", type=Path, required=True, help=f"directory with {CSV_NAME}")
    train.add_argument("--run-dir", type=Path, required=True, help="checkpoints go here")
    train.add_argument("--backbone", default="tiny-cnn")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--weight-decay", type=float, default=1e-4)
    train.add_argument("--split", type=_fractions, default=(0.7, 0.2, 0.1), help="train,val,test")
    train.add_argument("--seed", type=int, default=7)
    train.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    train.add_argument("--resume", action="store_true", help="continue from run-dir/last.pt")

    export = commands.add_parser("export", help="export a checkpoint as ONNX with metadata")
    export.add_argument("--checkpoint", type=Path, required=True, help="best.pt of a run")
    export.add_argument("--out", type=Path, required=True, help="path of model.onnx to write")
    export.add_argument("--name", default="thorax-tiny-cnn")
    export.add_argument("--version", required=True, help="e.g. 2026.11.30-1")

    verify = commands.add_parser("verify", help="check an ONNX model against the contract")
    verify.add_argument("--model", type=Path, required=True)
    verify.add_argument("--checkpoint", type=Path, help="reference for the parity check")
    verify.add_argument("--data", type=Path, help="dataset directory (default: the checkpoint's)")
    verify.add_argument("--images", type=int, default=64, help="held-back images for parity")
    verify.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference")
    return parser


def _synth(args: argparse.Namespace) -> int:
    from thorax_trainer.synthetic import generate

    out: Path = args.out
    if args.clean and out.exists():
        if not (out / DATASET_INFO).is_file() and any(out.iterdir()):
            log.error("%s is not empty and not a synthetic dataset; refusing to delete it", out)
            return 2
        shutil.rmtree(out)
    records = generate(out, images=args.images, seed=args.seed, size=args.size)
    patients = len({r.patient_id for r in records})
    log.info("wrote %d images of %d patients to %s", len(records), patients, out)
    return 0


def _train(args: argparse.Namespace) -> int:
    from thorax_trainer.train import TrainConfig, train

    result = train(
        TrainConfig(
            data=args.data,
            run_dir=args.run_dir,
            backbone=args.backbone,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            weight_decay=args.weight_decay,
            split=args.split,
            seed=args.seed,
            workers=args.workers,
            resume=args.resume,
        )
    )
    mean = result.validation_mean_auroc
    log.info(
        "best epoch %d, validation mean AUROC %s, %.0f s → %s",
        result.best_epoch,
        "n/a" if mean is None else f"{mean:.4f}",
        result.seconds,
        result.best_checkpoint,
    )
    for label, value in result.validation_auroc.items():
        log.info("  %-18s %s", label, "n/a" if value is None else f"{value:.4f}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from thorax_trainer.export import metadata_for, write_model
    from thorax_trainer.train import load_checkpoint, model_from_checkpoint

    checkpoint = load_checkpoint(args.checkpoint)
    metadata = metadata_for(checkpoint, args.name, args.version)
    model = model_from_checkpoint(checkpoint)
    doc = f"{args.name} {args.version}: Thorax chest X-ray classifier (thorax.model.v1)"
    write_model(model, metadata, args.out, doc)
    log.info("exported %s (%d bytes)", args.out, args.out.stat().st_size)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from thorax_trainer.verify import verify

    report = verify(
        args.model, args.checkpoint, args.data, images=args.images, tolerance=args.tolerance
    )
    print(json.dumps(report.to_json(), indent=2))
    if report.max_abs_diff is not None:
        log.info(
            "OK: metadata complete; ONNX Runtime vs PyTorch max abs diff %.2e on %d held-back "
            "images (tolerance %g)",
            report.max_abs_diff,
            report.images,
            report.tolerance,
        )
    else:
        log.info("OK: metadata complete; no checkpoint given, parity not checked")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Our own progress at INFO; libraries (the ONNX exporter is chatty) only from WARNING up.
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    handlers = {"synth": _synth, "train": _train, "export": _export, "verify": _verify}
    try:
        return handlers[args.command](args)
    except (ContractError, DatasetError) as error:
        log.error("%s", error)
        return 1
