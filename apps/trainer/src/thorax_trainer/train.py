"""Training: the CheXNet recipe on a dataset in the NIH layout, on CPU or on GPUs.

- Data: the prepared wire cache (see ``prepare.py``), split ``official`` (NIH's test list; train
  and validation cut from train_val by patient) or ``random-patient`` (CheXNet's seeded 70/10/20).
- Model: ``ThoraxModel`` around DenseNet-121 (default), ResNet-50 or the tiny CNN, fed with uint8
  wire images, so training runs the exported graph's own preprocessing.
- Loss: binary cross-entropy on logits, optionally with per-label positive weights
  (``balanced``: negatives / positives on the training split, capped).
- Optimiser: Adam (default) or SGD with momentum; linear warmup from ``warmup_start_factor x lr``
  over ``warmup_epochs`` (0: none, CheXNet's setting, the run starts at ``lr``), then
  ReduceLROnPlateau on the validation loss (factor 0.1, patience 1 by default, as the seed
  pipeline); early stopping after ``early_stopping`` epochs without a
  better validation mean AUROC.
- GPU: bf16 autocast and channels_last by default, optional ``torch.compile``; several GPUs or
  nodes through ``torchrun`` (DistributedDataParallel; NCCL on GPUs, gloo on CPUs).
- Checkpoints: ``last.pt`` every epoch (everything ``--resume`` needs, RNG states included, so a
  resumed run continues exactly as an uninterrupted one), ``best.pt`` at the best validation mean
  AUROC, completed at the end with validation and test results and the decision thresholds.
- Evaluation: no augmentation; per-label AUROC on validation and test, thresholds by Youden's J on
  validation, and ``report.md`` / ``report.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torch.nn.parallel import DistributedDataParallel

from thorax_trainer.contract import CROP_SIZE, LABELS
from thorax_trainer.dataset import DATASET_INFO, Record, Split, load_split
from thorax_trainer.loader import Augmentation, BatchLoader, augment
from thorax_trainer.metrics import MetricError, mean_auroc, per_label_auroc, per_label_thresholds
from thorax_trainer.model import (
    DEFAULT_BACKBONE,
    DEFAULT_DROPOUT,
    HEAD_PREFIX,
    LogitsView,
    ThoraxModel,
    build_model,
    count_parameters,
)
from thorax_trainer.prepare import WireCache, prepare
from thorax_trainer.report import evaluation, write_report
from thorax_trainer.runtime import (
    Distributed,
    all_gather_rows,
    all_reduce_sum,
    autocast_dtype,
    barrier,
    bf16_supported,
    configure_determinism,
    init_distributed,
    seed_everything,
    shutdown_distributed,
    use_channels_last,
)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "thorax-trainer-checkpoint-v2"
THRESHOLD_RULE = (
    "per label, the validation score t maximising Youden's J = TPR - FPR for 'positive iff p >= t'"
    " (highest t on ties; 0.5 when validation lacks a class; clipped to [1e-4, 1 - 1e-4])"
)
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
POS_WEIGHTS: tuple[str, ...] = ("none", "balanced")


@dataclass
class TrainConfig:
    data: Path
    run_dir: Path
    cache_dir: Path | None = None
    backbone: str = DEFAULT_BACKBONE
    network_size: int = CROP_SIZE
    imagenet_weights: Path | None = None
    dropout: float = DEFAULT_DROPOUT
    split: str = "official"
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    validation_fraction: float = 0.125
    epochs: int = 20
    batch_size: int = 16
    eval_batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-5
    warmup_epochs: float = 1.0
    warmup_start_factor: float = 1e-3
    plateau_factor: float = 0.1
    plateau_patience: int = 1
    plateau_threshold: float = 1e-3
    min_lr: float = 1e-8
    early_stopping: int = 4
    pos_weight: str = "none"
    pos_weight_max: float = 50.0
    flip_p: float = 0.5
    brightness_p: float = 0.5
    brightness_max: float = 32.0
    rotation_degrees: float = 0.0
    seed: int = 7
    deterministic: bool = True
    device: str = "auto"
    precision: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    loader_threads: int = 2
    prepare_workers: int = 0
    skip_missing: bool = False
    max_steps_per_epoch: int = 0
    log_every: int = 50
    resume: bool = False

    def augmentation(self) -> Augmentation:
        return Augmentation(
            self.flip_p, self.brightness_p, self.brightness_max, self.rotation_degrees
        )

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r} ({', '.join(OPTIMIZERS)})")
        if self.pos_weight not in POS_WEIGHTS:
            raise ValueError(f"unknown pos weight {self.pos_weight!r} ({', '.join(POS_WEIGHTS)})")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be at least 1")
        if self.warmup_epochs < 0 or not 0.0 < self.warmup_start_factor <= 1.0:
            raise ValueError("warm-up epochs must be >= 0 and its start factor in (0, 1]")

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        for key in ("data", "run_dir", "cache_dir", "imagenet_weights"):
            values[key] = None if values[key] is None else str(values[key])
        values["fractions"] = list(self.fractions)
        return values


@dataclass(frozen=True)
class TrainResult:
    best_checkpoint: Path
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    validation_auroc: dict[str, float | None]
    validation_mean_auroc: float | None
    test_auroc: dict[str, float | None]
    test_mean_auroc: float | None
    thresholds: list[float]
    seconds: float
    train_images_per_second: float


def dataset_info(root: Path) -> dict[str, Any]:
    """What ``dataset.json`` says about a dataset directory, or a generic description."""
    info_path = root / DATASET_INFO
    if info_path.is_file():
        info: dict[str, Any] = json.loads(info_path.read_text(encoding="utf-8"))
        return info
    return {"name": root.name, "kind": "nih-layout"}


def split_for(config: TrainConfig | dict[str, Any], records: list[Record] | None = None) -> Split:
    """The split a config (or a checkpoint's stored config) describes."""
    values = config.to_json() if isinstance(config, TrainConfig) else config
    return load_split(
        Path(values["data"]),
        values["split"],
        fractions=tuple(values["fractions"]),
        validation_fraction=float(values["validation_fraction"]),
        seed=int(values["seed"]),
        records=records,
    )


def targets_of(records: list[Record]) -> npt.NDArray[np.float32]:
    if not records:
        return np.zeros((0, len(LABELS)), dtype=np.float32)
    return np.stack([r.target() for r in records])


def _label_counts(records: list[Record]) -> dict[str, int]:
    return {label: sum(label in r.labels for r in records) for label in LABELS}


def split_summary(split: Split) -> dict[str, Any]:
    parts = split.by_name()
    return {
        "method": split.method,
        "images": {name: len(records) for name, records in parts.items()},
        "patients": {name: len({r.patient_id for r in records}) for name, records in parts.items()},
        "positives": {name: _label_counts(records) for name, records in parts.items()},
        "excluded": dict(split.excluded),
    }


def without_uncached(split: Split, cache: WireCache) -> Split:
    """``split`` less the records the wire cache lacks, counted in ``excluded`` by reason.

    With ``--skip-missing`` the cache leaves out CSV rows whose file is absent (``imageMissing``,
    a partial download) or cannot be decoded (``imageUnreadable``). The split's own exclusions
    (e.g. ``notInAnyList``) are kept beside them.
    """
    present = set(cache.names)
    parts: dict[str, list[Record]] = {}
    excluded = dict(split.excluded)
    for name, records in split.by_name().items():
        parts[name] = []
        for record in records:
            if record.image_index in present:
                parts[name].append(record)
            else:
                reason = cache.left_out.get(record.image_index, "imageMissing")
                excluded[reason] = excluded.get(reason, 0) + 1
    return Split(parts["train"], parts["validation"], parts["test"], split.method, excluded)


def positive_weights(targets: npt.NDArray[np.float32], cap: float) -> npt.NDArray[np.float32]:
    """negatives / positives per label, in [1, cap]; ``cap`` where a label has no positive."""
    positives = targets.sum(axis=0)
    negatives = targets.shape[0] - positives
    with np.errstate(divide="ignore"):
        ratio = np.where(positives > 0, negatives / np.maximum(positives, 1), cap)
    return np.clip(ratio, 1.0, cap).astype(np.float32)


def load_checkpoint(path: Path) -> dict[str, Any]:
    checkpoint: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any]) -> ThoraxModel:
    config = checkpoint["config"]
    model = build_model(
        checkpoint["backbone"],
        network_size=int(config["network_size"]),
        dropout=float(config["dropout"]),
    )
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return model


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: npt.NDArray[np.uint8] | torch.Tensor,
    *,
    batch_size: int = 64,
    device: torch.device | None = None,
    autocast: torch.dtype | None = None,
    memory_format: torch.memory_format | None = None,
) -> npt.NDArray[np.float32]:
    """Logits [N, 14] for uint8 wire images [N, 1, 256, 256], eval mode, no augmentation."""
    device = device or torch.device("cpu")
    model.eval()
    outputs: list[torch.Tensor] = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start : start + batch_size]
        batch = (
            chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.asarray(chunk))
        ).to(device)
        with torch.autocast(
            device.type, dtype=autocast or torch.float32, enabled=autocast is not None
        ):
            logits = (
                model.logits(batch, memory_format)
                if isinstance(model, ThoraxModel)
                else model(batch)
            )
        outputs.append(logits.float().cpu())
    if not outputs:
        return np.zeros((0, len(LABELS)), dtype=np.float32)
    return torch.cat(outputs).numpy().astype(np.float32)


def predict(
    model: nn.Module, images: npt.NDArray[np.uint8] | torch.Tensor, batch_size: int = 64
) -> npt.NDArray[np.float32]:
    """Probabilities [N, 14] on the CPU in fp32 (the export reference)."""
    return sigmoid(predict_logits(model, images, batch_size=batch_size))


def sigmoid(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


def bce(logits: npt.NDArray[np.float32], targets: npt.NDArray[np.float32]) -> float:
    if logits.shape[0] == 0:
        return float("nan")
    loss = F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(targets))
    return float(loss)


def warmup_rate(step: int, warmup_steps: int, learning_rate: float, start: float) -> float | None:
    """The learning rate warm-up sets before global step ``step`` (0-based), or None.

    Linear from ``start x learning_rate`` at step 0 to the full rate at step ``warmup_steps``,
    which is set once; None afterwards, when the rate belongs to ReduceLROnPlateau (it only acts
    at epoch ends after that step, so the two never overwrite each other). Without warm-up
    (``warmup_steps`` 0, as in CheXNet) there is nothing to set: every step runs at the rate the
    optimiser was built with, or a resumed run's reduced one.
    """
    if warmup_steps <= 0 or step > warmup_steps:
        return None
    return learning_rate * min(1.0, start + (1.0 - start) * step / warmup_steps)


def train_step(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    augmentation: Augmentation,
    generator: torch.Generator,
    autocast: torch.dtype | None,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Augment, forward (under autocast), BCE on fp32 logits, backward, step; returns the loss."""
    batch = augment(images, augmentation, generator)
    with torch.autocast(
        images.device.type, dtype=autocast or torch.float32, enabled=autocast is not None
    ):
        logits = module(batch)
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=pos_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return loss.detach()


class _Trainer:
    """One run's state; ``run()`` does the epochs."""

    def __init__(self, config: TrainConfig, ctx: Distributed, device: torch.device) -> None:
        self.config = config
        self.ctx = ctx
        self.device = device
        self.autocast = autocast_dtype(config.precision, device.type, bf16_supported(device))
        self.memory_format = (
            torch.channels_last if use_channels_last(config.channels_last, device.type) else None
        )

    def _log(self, message: str, *args: object) -> None:
        if self.ctx.is_main:
            log.info(message, *args)

    def setup(self) -> None:
        config = self.config
        cache: WireCache
        if self.ctx.is_main:
            cache = prepare(
                config.data,
                config.cache_dir,
                workers=config.prepare_workers,
                skip_missing=config.skip_missing,
            )
        barrier(self.ctx)
        if not self.ctx.is_main:
            cache = prepare(
                config.data, config.cache_dir, workers=1, skip_missing=config.skip_missing
            )
        split = without_uncached(split_for(config), cache)
        if not split.train or not split.validation:
            raise ValueError("training needs patients in both the train and validation splits")
        self.cache, self.split = cache, split
        self.summary = split_summary(split)
        self._log(
            "split %s: images %s, patients %s",
            split.method,
            self.summary["images"],
            self.summary["patients"],
        )
        excluded = self.summary["excluded"]
        if excluded and self.ctx.is_main:
            log.warning(
                "excluded from the splits: %d images (%s)",
                sum(excluded.values()),
                ", ".join(f"{reason} {count}" for reason, count in excluded.items()),
            )
        else:
            self._log("excluded from the splits: none")
        self.train_targets = targets_of(split.train)
        self.validation_targets = targets_of(split.validation)
        self.test_targets = targets_of(split.test)
        self.loader = BatchLoader(
            cache.images,
            cache.positions(split.train),
            self.train_targets,
            config.batch_size,
            shuffle=True,
            drop_last=len(split.train) > config.batch_size * self.ctx.world,
            seed=config.seed,
            rank=self.ctx.rank,
            world=self.ctx.world,
            device=self.device,
            threads=config.loader_threads,
        )

        self.model = build_model(
            config.backbone,
            network_size=config.network_size,
            dropout=config.dropout,
            imagenet_weights=config.imagenet_weights,
        )
        if config.imagenet_weights is None:
            if config.backbone in HEAD_PREFIX:
                self._log(
                    "no ImageNet weights given (--imagenet-weights PATH to a local %s state dict): "
                    "starting from random initialisation; CheXNet starts from ImageNet weights, "
                    "and on the real images a random start ends several AUROC points lower",
                    config.backbone,
                )
            self.initialisation = "random"
        else:
            self.initialisation = f"ImageNet weights from {config.imagenet_weights.name}"
        self.model.to(self.device)
        if self.memory_format is not None:
            self.model.to(memory_format=self.memory_format)
        view: nn.Module = LogitsView(self.model, self.memory_format)
        if self.ctx.enabled:
            view = DistributedDataParallel(
                view, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.step_module: nn.Module = torch.compile(view) if config.compile else view  # type: ignore[assignment]

        params = self.model.parameters()
        if config.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(
                params,
                lr=config.learning_rate,
                betas=(0.9, 0.999),
                weight_decay=config.weight_decay,
                fused=self.device.type == "cuda",  # one kernel for all parameters on a GPU
            )
        else:
            self.optimizer = torch.optim.SGD(
                params,
                lr=config.learning_rate,
                momentum=config.momentum,
                nesterov=True,
                weight_decay=config.weight_decay,
            )
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="min",
            factor=config.plateau_factor,
            patience=config.plateau_patience,
            threshold=config.plateau_threshold,
            threshold_mode="abs",
            min_lr=config.min_lr,
        )
        steps = len(self.loader)
        if config.max_steps_per_epoch > 0:
            steps = min(steps, config.max_steps_per_epoch)
        self.steps_per_epoch = steps
        self.warmup_steps = round(config.warmup_epochs * steps)
        self.pos_weight: torch.Tensor | None = None
        if config.pos_weight == "balanced":
            weights = positive_weights(self.train_targets, config.pos_weight_max)
            self.pos_weight = torch.from_numpy(weights).to(self.device)
            self._log(
                "positive weights: %s",
                dict(zip(LABELS, np.round(weights, 2).tolist(), strict=True)),
            )
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed * 1000 + self.ctx.rank)
        self.parameters = count_parameters(self.model)
        self._log(
            "%s at %d px: %d parameters, %d steps per epoch of %d per rank x %d rank(s), "
            "device %s, autocast %s, channels_last %s, compile %s",
            config.backbone,
            config.network_size,
            self.parameters,
            steps,
            config.batch_size,
            self.ctx.world,
            self.device,
            self.autocast or "off",
            self.memory_format is not None,
            config.compile,
        )

    def _warmup(self, step: int) -> None:
        rate = warmup_rate(
            step, self.warmup_steps, self.config.learning_rate, self.config.warmup_start_factor
        )
        if rate is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = rate

    def train_epoch(self, epoch: int, global_step: int) -> tuple[float, int, float, int]:
        """Returns (mean loss over all ranks, global step, seconds, images over all ranks)."""
        config = self.config
        self.step_module.train()
        self.loader.set_epoch(epoch)
        augmentation = config.augmentation()
        total_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        started = time.monotonic()
        for step, (images, targets) in enumerate(self.loader):
            if step >= self.steps_per_epoch:
                break
            self._warmup(global_step)
            loss = train_step(
                self.step_module,
                self.optimizer,
                images,
                targets,
                augmentation=augmentation,
                generator=self.generator,
                autocast=self.autocast,
                pos_weight=self.pos_weight,
            )
            total_loss += loss.detach().double() * images.shape[0]
            seen += images.shape[0]
            global_step += 1
            if config.log_every and (step + 1) % config.log_every == 0:
                rate = seen * self.ctx.world / (time.monotonic() - started)
                self._log(
                    "epoch %d step %d/%d loss %.4f (%.0f images/s)",
                    epoch,
                    step + 1,
                    self.steps_per_epoch,
                    float(loss),
                    rate,
                )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.monotonic() - started
        loss_sum, count = all_reduce_sum(self.ctx, [float(total_loss), float(seen)], self.device)
        return loss_sum / max(1.0, count), global_step, seconds, int(count)

    def evaluate(self, records: list[Record]) -> npt.NDArray[np.float32]:
        """Logits for ``records``: contiguous shards across ranks, gathered on every rank."""
        positions = self.cache.positions(records)
        per_rank = math.ceil(len(positions) / self.ctx.world) if len(positions) else 0
        mine = positions[self.ctx.rank * per_rank : (self.ctx.rank + 1) * per_rank]
        loader = BatchLoader(
            self.cache.images,
            mine,
            np.zeros((len(mine), len(LABELS)), dtype=np.float32),
            self.config.eval_batch_size,
            shuffle=False,
            drop_last=False,
            device=self.device,
            threads=self.config.loader_threads,
        )
        self.model.eval()
        outputs: list[torch.Tensor] = []
        with torch.no_grad():
            for images, _ in loader:
                with torch.autocast(
                    self.device.type,
                    dtype=self.autocast or torch.float32,
                    enabled=self.autocast is not None,
                ):
                    logits = self.model.logits(images, self.memory_format)
                outputs.append(logits.float().cpu())
        rows = torch.cat(outputs).numpy() if outputs else np.zeros((0, len(LABELS)), np.float32)
        return all_gather_rows(self.ctx, rows.astype(np.float32))

    def base_checkpoint(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "backbone": self.config.backbone,
            "labels": list(LABELS),
            "config": self.config.to_json(),
            "dataset": {**dataset_info(self.config.data), "split": self.summary},
            "parameters": self.parameters,
            "initialisation": self.initialisation,
            "torch": str(torch.__version__),
            "device": {
                "type": self.device.type,
                "name": torch.cuda.get_device_name(self.device)
                if self.device.type == "cuda"
                else "cpu",
                "worldSize": self.ctx.world,
                "autocast": str(self.autocast).removeprefix("torch.") if self.autocast else "fp32",
                "channelsLast": self.memory_format is not None,
                "compile": self.config.compile,
            },
        }

    def run(self) -> TrainResult:
        started = time.monotonic()
        config = self.config
        config.run_dir.mkdir(parents=True, exist_ok=True)
        last_path = config.run_dir / "last.pt"
        best_path = config.run_dir / "best.pt"
        history: list[dict[str, Any]] = []
        start_epoch, global_step = 1, 0
        best_score, best_epoch, stale = -math.inf, 0, 0
        if config.resume and last_path.is_file():
            last = load_checkpoint(last_path)
            self.model.load_state_dict(last["state_dict"])
            self.optimizer.load_state_dict(last["optimizer"])
            self.plateau.load_state_dict(last["plateau"])
            state = last["rng"]
            torch.set_rng_state(state["torch"])
            if self.device.type == "cuda" and "cuda" in state:
                torch.cuda.set_rng_state(state["cuda"], self.device)
            augmentation_states = state["augmentation"]
            if len(augmentation_states) == self.ctx.world:
                self.generator.set_state(augmentation_states[self.ctx.rank])
            else:
                log.warning(
                    "resuming with %d rank(s) instead of %d: augmentation is reseeded, so the "
                    "run will not match an uninterrupted one exactly",
                    self.ctx.world,
                    len(augmentation_states),
                )
                resumed_at = int(last["epoch"]) + 1
                self.generator.manual_seed(config.seed * 1000 + 997 * resumed_at + self.ctx.rank)
            history = list(last["history"])
            start_epoch = int(last["epoch"]) + 1
            global_step = int(last["globalStep"])
            best_score, best_epoch, stale = (
                float(last["bestScore"]),
                int(last["bestEpoch"]),
                int(last["stale"]),
            )
            self._log("resumed from %s at epoch %d", last_path, start_epoch)
            if bool(last.get("stopped")):
                start_epoch = config.epochs + 1
        base = self.base_checkpoint()
        stopped = False
        for epoch in range(start_epoch, config.epochs + 1):
            loss, global_step, seconds, images = self.train_epoch(epoch, global_step)
            validation_logits = self.evaluate(self.split.validation)
            validation_loss = bce(validation_logits, self.validation_targets)
            try:
                auroc = per_label_auroc(self.validation_targets, validation_logits, LABELS)
            except MetricError as error:
                raise MetricError(
                    f"epoch {epoch}, validation: {error}; the run has diverged (try a lower "
                    "learning rate) or its input is broken"
                ) from error
            score = mean_auroc(auroc)
            if global_step > self.warmup_steps:
                self.plateau.step(validation_loss)
            entry = {
                "epoch": epoch,
                "trainLoss": round(loss, 6),
                "validationLoss": round(validation_loss, 6),
                "validationMeanAuroc": None if score is None else round(score, 6),
                "learningRate": self.optimizer.param_groups[0]["lr"],
                "trainImages": images,
                "trainSeconds": round(seconds, 3),
                "trainImagesPerSecond": round(images / max(seconds, 1e-9), 2),
            }
            history.append(entry)
            self._log(
                "epoch %d/%d train loss %.4f, validation loss %.4f, mean AUROC %s, lr %.2e, "
                "%.1f images/s",
                epoch,
                config.epochs,
                loss,
                validation_loss,
                "n/a" if score is None else f"{score:.4f}",
                entry["learningRate"],
                entry["trainImagesPerSecond"],
            )
            if score is not None and score > best_score:
                best_score, best_epoch, stale = score, epoch, 0
                if self.ctx.is_main:
                    torch.save(
                        {**base, "epoch": epoch, "state_dict": self.model.state_dict()}, best_path
                    )
            else:
                stale += 1
            stopped = config.early_stopping > 0 and stale >= config.early_stopping
            augmentation_states = self._gather_generator_states()
            if self.ctx.is_main:
                rng: dict[str, Any] = {
                    "torch": torch.get_rng_state(),
                    "augmentation": augmentation_states,
                }
                if self.device.type == "cuda":
                    rng["cuda"] = torch.cuda.get_rng_state(self.device)
                torch.save(
                    {
                        **base,
                        "epoch": epoch,
                        "globalStep": global_step,
                        "state_dict": self.model.state_dict(),
                        "optimizer": self.optimizer.state_dict(),
                        "plateau": self.plateau.state_dict(),
                        "rng": rng,
                        "history": history,
                        "bestScore": best_score,
                        "bestEpoch": best_epoch,
                        "stale": stale,
                        "stopped": stopped,
                    },
                    last_path,
                )
            barrier(self.ctx)
            if stopped:
                self._log("early stop: no better validation mean AUROC for %d epochs", stale)
                break
        if not best_path.is_file():
            raise RuntimeError("no epoch produced a defined validation AUROC; nothing to export")
        result = self.finish(best_path, history, started, stopped)
        barrier(self.ctx)
        return result

    def _gather_generator_states(self) -> list[torch.Tensor]:
        state = self.generator.get_state()
        if not self.ctx.enabled:
            return [state]
        gathered: list[object] = [None] * self.ctx.world
        dist.all_gather_object(gathered, state)
        return [torch.as_tensor(s) for s in gathered]

    def finish(
        self, best_path: Path, history: list[dict[str, Any]], started: float, stopped: bool
    ) -> TrainResult:
        best = load_checkpoint(best_path)
        self.model.load_state_dict(best["state_dict"])
        validation_logits = self.evaluate(self.split.validation)
        test_logits = self.evaluate(self.split.test)
        validation_p = sigmoid(validation_logits)
        test_p = sigmoid(test_logits)
        thresholds = per_label_thresholds(self.validation_targets, validation_p)
        validation = {
            **evaluation(self.validation_targets, validation_p),
            "thresholds": thresholds,
            "thresholdRule": THRESHOLD_RULE,
        }
        test = evaluation(self.test_targets, test_p, thresholds)
        rates = [e["trainImagesPerSecond"] for e in history if e.get("trainImagesPerSecond")]
        throughput = float(np.median(rates)) if rates else 0.0
        best.update(
            validation=validation,
            test=test,
            history=history,
            trainedAt=datetime.now(UTC).isoformat(timespec="seconds"),
            trainSeconds=round(time.monotonic() - started, 1),
            trainImagesPerSecond=throughput,
            epochsRun=len(history),
            stoppedEarly=stopped,
        )
        if self.ctx.is_main:
            torch.save(best, best_path)
            report = {
                "run": self.config.run_dir.name,
                "dataset": best["dataset"].get("name", "?"),
                "datasetKind": best["dataset"].get("kind", "?"),
                "split": self.split.method,
                "images": self.summary["images"],
                "patients": self.summary["patients"],
                "excluded": self.summary["excluded"],
                "backbone": self.config.backbone,
                "networkSize": self.config.network_size,
                "initialisation": self.initialisation,
                "bestEpoch": best["epoch"],
                "epochsRun": len(history),
                "stoppedEarly": stopped,
                "thresholdRule": THRESHOLD_RULE,
                "thresholds": thresholds,
                "validation": {
                    k: v for k, v in validation.items() if k not in ("thresholds", "thresholdRule")
                },
                "test": test if self.split.test else None,
                "trainImagesPerSecond": throughput,
                "device": best["device"],
                "history": history,
            }
            json_path, md_path = write_report(self.config.run_dir, report)
            self._log("report: %s, %s", md_path, json_path)
        return TrainResult(
            best_checkpoint=best_path,
            best_epoch=int(best["epoch"]),
            epochs_run=len(history),
            stopped_early=stopped,
            validation_auroc=validation["auroc"],
            validation_mean_auroc=validation["meanAuroc"],
            test_auroc=test["auroc"],
            test_mean_auroc=test["meanAuroc"],
            thresholds=thresholds,
            seconds=time.monotonic() - started,
            train_images_per_second=throughput,
        )


def train(config: TrainConfig) -> TrainResult:
    """Train one run (one process, or one rank of a torchrun job)."""
    config.validate()
    ctx, device = init_distributed(config.device)
    try:
        seed_everything(config.seed)
        configure_determinism(config.deterministic, device)
        trainer = _Trainer(config, ctx, device)
        trainer.setup()
        return trainer.run()
    finally:
        shutdown_distributed(ctx)
