"""Command line: ``python -m thorax_trainer {synth,prepare,train,export,quantize,verify,bench}``.

Under ``torchrun`` only ``train`` is distributed; every rank runs the same command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from thorax_trainer.contract import CROP_SIZE, ContractError
from thorax_trainer.dataset import CSV_NAME, DATASET_INFO, SPLIT_METHODS, DatasetError
from thorax_trainer.metrics import MetricError
from thorax_trainer.model import BACKBONES, DEFAULT_BACKBONE, WeightsError
from thorax_trainer.quantize import QuantizationBounds as QuantizationDefaults
from thorax_trainer.quantize import QuantizationError
from thorax_trainer.runtime import PRECISIONS, SWITCHES

log = logging.getLogger("thorax_trainer")


def _fractions(text: str) -> tuple[float, float, float]:
    parts = [float(p) for p in text.split(",")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(
            "expected three comma-separated fractions (train,validation,test), e.g. 0.7,0.1,0.2"
        )
    return parts[0], parts[1], parts[2]


def _add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda[:N]")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="auto: bf16 autocast on GPU"
    )
    parser.add_argument(
        "--channels-last", choices=SWITCHES, default="auto", help="auto: on for GPU"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")


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
        "--layout",
        choices=("flat", "nih"),
        default="flat",
        help="flat: images/; nih: images_001/images/ … (10,000 per folder)",
    )
    synth.add_argument("--test-fraction", type=float, default=0.2, help="of images, by patient")
    synth.add_argument("--workers", type=int, default=1, help="rendering processes")
    synth.add_argument(
        "--clean", action="store_true", help="delete an existing dataset in --out first"
    )

    prep = commands.add_parser("prepare", help="decode images once into the uint8 wire cache")
    prep.add_argument("--data", type=Path, required=True, help=f"directory with {CSV_NAME}")
    prep.add_argument("--cache", type=Path, help="cache directory (default DATA/wire-cache)")
    prep.add_argument("--workers", type=int, default=0, help="decoding processes (0: all CPUs)")
    prep.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out absent or undecodable images (counted)",
    )
    prep.add_argument("--force", action="store_true", help="rebuild even if current")

    train = commands.add_parser("train", help="train on a dataset directory in the NIH layout")
    train.add_argument("--data", type=Path, required=True, help=f"directory with {CSV_NAME}")
    train.add_argument("--run-dir", type=Path, required=True, help="checkpoints and report")
    train.add_argument("--cache", type=Path, help="wire cache (default DATA/wire-cache)")
    train.add_argument("--backbone", choices=sorted(BACKBONES), default=DEFAULT_BACKBONE)
    train.add_argument(
        "--input-size",
        type=int,
        default=CROP_SIZE,
        help="network input (the graph average-pools the 224 crop; must divide 224)",
    )
    train.add_argument(
        "--imagenet-weights", type=Path, help="local torchvision state dict of the backbone"
    )
    train.add_argument("--dropout", type=float, default=0.2)
    train.add_argument("--split", choices=SPLIT_METHODS, default="official")
    train.add_argument(
        "--fractions",
        type=_fractions,
        default=(0.7, 0.1, 0.2),
        help="train,validation,test patients for --split random-patient",
    )
    train.add_argument(
        "--validation-fraction",
        type=float,
        default=0.125,
        help="share of train_val patients for validation with --split official",
    )
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=16, help="per rank")
    train.add_argument("--eval-batch-size", type=int, default=64)
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--momentum", type=float, default=0.9, help="SGD only")
    train.add_argument("--weight-decay", type=float, default=1e-5)
    train.add_argument("--warmup-epochs", type=float, default=1.0)
    train.add_argument("--warmup-start-factor", type=float, default=1e-3)
    train.add_argument("--plateau-factor", type=float, default=0.1)
    train.add_argument("--plateau-patience", type=int, default=1)
    train.add_argument("--plateau-threshold", type=float, default=1e-3)
    train.add_argument("--min-lr", type=float, default=1e-8)
    train.add_argument(
        "--early-stopping", type=int, default=4, help="epochs without improvement (0: off)"
    )
    train.add_argument("--pos-weight", choices=("none", "balanced"), default="none")
    train.add_argument("--pos-weight-max", type=float, default=50.0)
    train.add_argument("--flip-p", type=float, default=0.5)
    train.add_argument("--brightness-p", type=float, default=0.5)
    train.add_argument("--brightness-max", type=float, default=32.0)
    train.add_argument("--rotation", type=float, default=0.0, help="max degrees, 0: off")
    train.add_argument("--seed", type=int, default=7)
    train.add_argument(
        "--no-deterministic", action="store_true", help="allow nondeterministic fast kernels"
    )
    _add_device_options(train)
    train.add_argument("--loader-threads", type=int, default=2)
    train.add_argument("--prepare-workers", type=int, default=0)
    train.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out absent or undecodable images (counted)",
    )
    train.add_argument("--max-steps-per-epoch", type=int, default=0, help="0: whole epoch")
    train.add_argument("--log-every", type=int, default=50, help="steps between log lines")
    train.add_argument("--resume", action="store_true", help="continue from run-dir/last.pt")

    export = commands.add_parser("export", help="export a checkpoint as ONNX with metadata")
    export.add_argument("--checkpoint", type=Path, required=True, help="best.pt of a run")
    export.add_argument("--out", type=Path, required=True, help="path of model.onnx to write")
    export.add_argument("--name", default="thorax-tiny-cnn")
    export.add_argument("--version", required=True, help="e.g. 2026.11.30-1")

    quant = commands.add_parser("quantize", help="INT8 static quantisation beside the fp32 model")
    quant.add_argument("--model", type=Path, required=True, help="the fp32 model.onnx")
    quant.add_argument("--checkpoint", type=Path, required=True, help="best.pt of the run")
    quant.add_argument("--data", type=Path, help="dataset directory (default: the checkpoint's)")
    quant.add_argument("--cache", type=Path, help="wire cache (default DATA/wire-cache)")
    quant.add_argument("--out", type=Path, help="default: model.int8.onnx beside --model")
    quant.add_argument(
        "--calibration-images", type=int, default=256, help="drawn from the training split"
    )
    quant.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax")
    quant.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: all)")
    bounds = QuantizationDefaults()
    quant.add_argument(
        "--max-auroc-drop",
        type=float,
        default=bounds.max_mean_auroc_drop,
        help="refuse the INT8 model when its test mean AUROC is lower than fp32's by more "
        "(default %(default)s)",
    )
    quant.add_argument(
        "--max-probability-diff",
        type=float,
        default=bounds.max_abs_probability_diff,
        help="refuse it when a test probability differs from fp32's by more (default %(default)s)",
    )
    quant.add_argument(
        "--max-mean-probability-diff",
        type=float,
        default=bounds.max_mean_abs_probability_diff,
        help="refuse it when the mean absolute test probability difference is larger "
        "(default %(default)s)",
    )

    verify = commands.add_parser("verify", help="check an ONNX model against the contract")
    verify.add_argument("--model", type=Path, required=True)
    verify.add_argument("--checkpoint", type=Path, help="reference for the parity check")
    verify.add_argument("--data", type=Path, help="dataset directory (default: the checkpoint's)")
    verify.add_argument("--images", type=int, default=64, help="held-back images for parity")
    verify.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference")

    bench = commands.add_parser("bench", help="training images/s: data path vs raw model step")
    bench.add_argument("--data", type=Path, required=True, help="dataset (synthetic is fine)")
    bench.add_argument("--cache", type=Path, help="wire cache (default DATA/wire-cache)")
    bench.add_argument("--backbone", choices=sorted(BACKBONES), default=DEFAULT_BACKBONE)
    bench.add_argument("--input-size", type=int, default=CROP_SIZE)
    bench.add_argument("--batch-size", type=int, default=16)
    bench.add_argument("--steps", type=int, default=10, help="timed steps per phase and round")
    bench.add_argument("--warmup-steps", type=int, default=3)
    bench.add_argument("--rounds", type=int, default=3)
    bench.add_argument("--loader-threads", type=int, default=4)
    bench.add_argument("--prepare-workers", type=int, default=0)
    _add_device_options(bench)
    return parser


def _synth(args: argparse.Namespace) -> int:
    from thorax_trainer.synthetic import generate

    out: Path = args.out
    if args.clean and out.exists():
        if not (out / DATASET_INFO).is_file() and any(out.iterdir()):
            log.error("%s is not empty and not a synthetic dataset; refusing to delete it", out)
            return 2
        shutil.rmtree(out)
    records = generate(
        out,
        images=args.images,
        seed=args.seed,
        size=args.size,
        layout=args.layout,
        test_fraction=args.test_fraction,
        workers=args.workers,
    )
    patients = len({r.patient_id for r in records})
    log.info("wrote %d images of %d patients to %s", len(records), patients, out)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from thorax_trainer.prepare import prepare

    cache = prepare(
        args.data,
        args.cache,
        workers=args.workers,
        skip_missing=args.skip_missing,
        force=args.force,
    )
    log.info("cache %s: %d images", cache.root, len(cache))
    return 0


def _train(args: argparse.Namespace) -> int:
    from thorax_trainer.train import TrainConfig, train

    result = train(
        TrainConfig(
            data=args.data,
            run_dir=args.run_dir,
            cache_dir=args.cache,
            backbone=args.backbone,
            network_size=args.input_size,
            imagenet_weights=args.imagenet_weights,
            dropout=args.dropout,
            split=args.split,
            fractions=args.fractions,
            validation_fraction=args.validation_fraction,
            epochs=args.epochs,
            batch_size=args.batch_size,
            eval_batch_size=args.eval_batch_size,
            optimizer=args.optimizer,
            learning_rate=args.lr,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            warmup_epochs=args.warmup_epochs,
            warmup_start_factor=args.warmup_start_factor,
            plateau_factor=args.plateau_factor,
            plateau_patience=args.plateau_patience,
            plateau_threshold=args.plateau_threshold,
            min_lr=args.min_lr,
            early_stopping=args.early_stopping,
            pos_weight=args.pos_weight,
            pos_weight_max=args.pos_weight_max,
            flip_p=args.flip_p,
            brightness_p=args.brightness_p,
            brightness_max=args.brightness_max,
            rotation_degrees=args.rotation,
            seed=args.seed,
            deterministic=not args.no_deterministic,
            device=args.device,
            precision=args.precision,
            channels_last=args.channels_last,
            compile=args.compile,
            loader_threads=args.loader_threads,
            prepare_workers=args.prepare_workers,
            skip_missing=args.skip_missing,
            max_steps_per_epoch=args.max_steps_per_epoch,
            log_every=args.log_every,
            resume=args.resume,
        )
    )
    if os.environ.get("RANK", "0") != "0":
        return 0

    def show(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    log.info(
        "best epoch %d of %d; mean AUROC validation %s, test %s; %.0f s; %.1f train images/s → %s",
        result.best_epoch,
        result.epochs_run,
        show(result.validation_mean_auroc),
        show(result.test_mean_auroc),
        result.seconds,
        result.train_images_per_second,
        result.best_checkpoint,
    )
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


def _quantize(args: argparse.Namespace) -> int:
    import numpy as np

    from thorax_trainer.prepare import prepare
    from thorax_trainer.quantize import QuantizationBounds, quantize
    from thorax_trainer.train import load_checkpoint, split_for, targets_of

    checkpoint = load_checkpoint(args.checkpoint)
    config = dict(checkpoint["config"])
    if args.data is not None:
        config["data"] = str(args.data)
    data = Path(config["data"])
    cache = prepare(data, args.cache or (None if args.data else _path(config["cache_dir"])))
    split = split_for(config)
    present = set(cache.names)
    train = [r for r in split.train if r.image_index in present]
    validation = [r for r in split.validation if r.image_index in present]
    test = [r for r in split.test if r.image_index in present]
    val_images = np.asarray(cache.images[cache.positions(validation)])
    val_targets = targets_of(validation)
    test_images = np.asarray(cache.images[cache.positions(test)])
    test_targets = targets_of(test)
    # Calibration from train: validation chooses the thresholds, test measures the differences.
    rng = np.random.default_rng(0)
    pick = np.sort(rng.permutation(len(train))[: args.calibration_images])
    train_positions = cache.positions(train)[pick]
    out = args.out or args.model.with_name("model.int8.onnx")
    result = quantize(
        args.model,
        out,
        calibration=np.asarray(cache.images[train_positions]),
        validation=(val_images, val_targets),
        test=(test_images, test_targets) if len(test_images) else None,
        bounds=QuantizationBounds(
            max_mean_auroc_drop=args.max_auroc_drop,
            max_abs_probability_diff=args.max_probability_diff,
            max_mean_abs_probability_diff=args.max_mean_probability_diff,
        ),
        method=args.method,
        threads=args.threads,
    )
    print(json.dumps(result.to_json(), indent=2))
    diff = result.auroc_difference("test")
    log.info(
        "INT8 %s (%d bytes): test mean AUROC difference %s, probability difference max %.4f "
        "mean %.5f (%s), CPU speed ratio %.2fx",
        out,
        result.int8_bytes,
        "n/a" if diff is None else f"{diff:+.4f}",
        result.max_abs_probability_diff,
        result.mean_abs_probability_diff,
        result.comparison_split,
        result.speed_ratio,
    )
    return 0


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


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


def _bench(args: argparse.Namespace) -> int:
    from thorax_trainer.bench import BenchConfig, bench

    result = bench(
        BenchConfig(
            data=args.data,
            cache_dir=args.cache,
            backbone=args.backbone,
            network_size=args.input_size,
            batch_size=args.batch_size,
            steps=args.steps,
            warmup_steps=args.warmup_steps,
            rounds=args.rounds,
            device=args.device,
            precision=args.precision,
            channels_last=args.channels_last,
            compile=args.compile,
            loader_threads=args.loader_threads,
            prepare_workers=args.prepare_workers,
        )
    )
    print(json.dumps(result, indent=2))
    log.info(
        "%s on %s, batch %d, %s: raw step %.1f images/s, training with the data path %.1f "
        "images/s (ratio %.3f), data path alone %.1f images/s",
        result["backbone"],
        result["device"],
        result["batchSize"],
        result["precision"],
        result["rawImagesPerSecond"],
        result["trainImagesPerSecond"],
        result["trainToRawRatio"],
        result["loaderImagesPerSecond"],
    )
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
    handlers = {
        "synth": _synth,
        "prepare": _prepare,
        "train": _train,
        "export": _export,
        "quantize": _quantize,
        "verify": _verify,
        "bench": _bench,
    }
    try:
        return handlers[args.command](args)
    except (ContractError, DatasetError, WeightsError, MetricError, QuantizationError) as error:
        log.error("%s", error)
        return 1
