"""Training loop: patient-level split, BCE on 14 labels, best-by-validation-AUROC checkpoint.

The loop feeds the wire images (uint8, 256²) through ``ThoraxModel``, so training runs the same
in-graph preprocessing as the exported model. Augmentation happens on the wire images: a random
shift of up to ``shift`` pixels (edge pixels repeated) and an exposure jitter.

Checkpoints (``torch.save`` dictionaries, loadable with ``weights_only=True``):
- ``last.pt`` after every epoch, with optimiser and scheduler state, for ``--resume``;
- ``best.pt``, the epoch with the highest validation mean AUROC, completed at the end with the
  per-label validation AUROC and the Youden's J thresholds that ``export`` writes into the model.
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
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torch.utils.data import DataLoader

from thorax_trainer.contract import LABELS
from thorax_trainer.dataset import (
    CSV_NAME,
    DATASET_INFO,
    Record,
    Split,
    WireImageDataset,
    read_records,
    split_by_patient,
)
from thorax_trainer.metrics import mean_auroc, per_label_auroc, per_label_thresholds
from thorax_trainer.model import ThoraxModel, build_model, count_parameters

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "thorax-trainer-checkpoint-v1"
THRESHOLD_RULE = (
    "per label, the validation score t maximising Youden's J = TPR - FPR for 'positive iff p >= t'"
    " (highest t on ties; 0.5 when validation lacks a class; clipped to [1e-4, 1 - 1e-4])"
)


@dataclass
class TrainConfig:
    data: Path
    run_dir: Path
    backbone: str = "tiny-cnn"
    epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)
    seed: int = 7
    shift: int = 8
    exposure: float = 0.1
    workers: int = 0
    resume: bool = False

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["data"] = str(self.data)
        values["run_dir"] = str(self.run_dir)
        values["split"] = list(self.split)
        return values


@dataclass(frozen=True)
class TrainResult:
    best_checkpoint: Path
    best_epoch: int
    validation_auroc: dict[str, float | None]
    validation_mean_auroc: float | None
    thresholds: list[float]
    seconds: float


def dataset_info(root: Path) -> dict[str, Any]:
    """What ``dataset.json`` says about a dataset directory, or a generic description."""
    info_path = root / DATASET_INFO
    if info_path.is_file():
        info: dict[str, Any] = json.loads(info_path.read_text(encoding="utf-8"))
        return info
    return {"name": root.name, "kind": "nih-layout"}


def load_split(root: Path, fractions: tuple[float, float, float], seed: int) -> Split:
    return split_by_patient(read_records(root / CSV_NAME), fractions, seed)


def augment(
    images: torch.Tensor, shift: int, exposure: float, generator: torch.Generator
) -> torch.Tensor:
    """Random shift (edge-replicated) and exposure jitter on a uint8 [N, 1, H, W] batch."""
    n, _, height, width = images.shape
    out = images.to(torch.float32)
    if shift > 0:
        padded = F.pad(out, (shift, shift, shift, shift), mode="replicate")
        offsets = torch.randint(0, 2 * shift + 1, (n, 2), generator=generator)
        out = torch.stack(
            [
                padded[i, :, dy : dy + height, dx : dx + width]
                for i, (dy, dx) in enumerate(offsets.tolist())
            ]
        )
    if exposure > 0:
        gain = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * exposure
        bias = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * 255.0 * exposure / 2
        out = out * gain + bias
    return out.round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, batch_size: int = 64
) -> npt.NDArray[np.float32]:
    """Probabilities [N, 14] for uint8 wire images [N, 1, 256, 256], in eval mode."""
    model.eval()
    outputs = [model(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    if not outputs:
        return np.zeros((0, len(LABELS)), dtype=np.float32)
    return torch.cat(outputs).numpy().astype(np.float32)


def _label_counts(records: list[Record]) -> dict[str, int]:
    return {label: sum(label in r.labels for r in records) for label in LABELS}


def _split_summary(split: Split) -> dict[str, Any]:
    parts = split.by_name()
    return {
        "method": "patient",
        "images": {name: len(records) for name, records in parts.items()},
        "patients": {name: len({r.patient_id for r in records}) for name, records in parts.items()},
        "positives": {name: _label_counts(records) for name, records in parts.items()},
    }


def _lr_lambda(warmup_steps: int, total_steps: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def load_checkpoint(path: Path) -> dict[str, Any]:
    checkpoint: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any]) -> ThoraxModel:
    model = build_model(checkpoint["backbone"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return model


def train(config: TrainConfig) -> TrainResult:
    started = time.monotonic()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    split = load_split(config.data, config.split, config.seed)
    if not split.train or not split.validation:
        raise ValueError("training needs patients in both the train and validation splits")
    summary = _split_summary(split)
    log.info("split by patient: %s images, %s patients", summary["images"], summary["patients"])
    train_set = WireImageDataset(config.data, split.train)
    validation_set = WireImageDataset(config.data, split.validation)
    validation_images = validation_set.images()
    validation_targets = validation_set.targets.numpy()
    loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(train_set) > config.batch_size,
        generator=generator,
        num_workers=config.workers,
    )

    model = build_model(config.backbone)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    steps_per_epoch = len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        _lr_lambda(config.warmup_epochs * steps_per_epoch, config.epochs * steps_per_epoch),
    )
    config.run_dir.mkdir(parents=True, exist_ok=True)
    last_path = config.run_dir / "last.pt"
    best_path = config.run_dir / "best.pt"
    history: list[dict[str, Any]] = []
    start_epoch = 1
    best_score = -math.inf
    best_epoch = 0
    if config.resume and last_path.is_file():
        last = load_checkpoint(last_path)
        model.load_state_dict(last["state_dict"])
        optimizer.load_state_dict(last["optimizer"])
        scheduler.load_state_dict(last["scheduler"])
        generator.set_state(last["generator"])
        history = list(last["history"])
        start_epoch = int(last["epoch"]) + 1
        best_score = float(last["best_score"])
        best_epoch = int(last["best_epoch"])
        log.info("resumed from %s at epoch %d", last_path, start_epoch)

    base: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "backbone": config.backbone,
        "labels": list(LABELS),
        "config": config.to_json(),
        "dataset": {**dataset_info(config.data), "split": summary},
        "parameters": count_parameters(model),
        "torch": str(torch.__version__),
    }
    log.info(
        "%s: %d parameters, %d steps per epoch",
        config.backbone,
        base["parameters"],
        steps_per_epoch,
    )

    for epoch in range(start_epoch, config.epochs + 1):
        epoch_started = time.monotonic()
        model.train()
        total_loss = 0.0
        seen = 0
        for images, targets in loader:
            batch = augment(images, config.shift, config.exposure, generator)
            loss = F.binary_cross_entropy_with_logits(model.logits(batch), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * images.shape[0]
            seen += images.shape[0]
        probabilities = predict(model, validation_images)
        auroc = per_label_auroc(validation_targets, probabilities, LABELS)
        score = mean_auroc(auroc)
        entry = {
            "epoch": epoch,
            "trainLoss": total_loss / max(1, seen),
            "validationMeanAuroc": score,
            "seconds": round(time.monotonic() - epoch_started, 2),
        }
        history.append(entry)
        log.info(
            "epoch %d/%d loss %.4f val mean AUROC %s (%.1f s)",
            epoch,
            config.epochs,
            entry["trainLoss"],
            "n/a" if score is None else f"{score:.4f}",
            entry["seconds"],
        )
        if score is not None and score > best_score:
            best_score, best_epoch = score, epoch
            torch.save({**base, "epoch": epoch, "state_dict": model.state_dict()}, best_path)
        torch.save(
            {
                **base,
                "epoch": epoch,
                "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(),
                "history": history,
                "best_score": best_score,
                "best_epoch": best_epoch,
            },
            last_path,
        )

    if not best_path.is_file():
        raise RuntimeError("no epoch produced a defined validation AUROC; nothing to export")
    best = load_checkpoint(best_path)
    best_model = model_from_checkpoint(best)
    probabilities = predict(best_model, validation_images)
    auroc = per_label_auroc(validation_targets, probabilities, LABELS)
    thresholds = per_label_thresholds(validation_targets, probabilities)
    best["validation"] = {
        "auroc": auroc,
        "meanAuroc": mean_auroc(auroc),
        "thresholds": thresholds,
        "thresholdRule": THRESHOLD_RULE,
    }
    best["history"] = history
    best["trainedAt"] = datetime.now(UTC).isoformat(timespec="seconds")
    best["trainSeconds"] = round(time.monotonic() - started, 1)
    torch.save(best, best_path)
    (config.run_dir / "validation.json").write_text(
        json.dumps({"bestEpoch": best_epoch, **best["validation"], "history": history}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    return TrainResult(
        best_checkpoint=best_path,
        best_epoch=best_epoch,
        validation_auroc=auroc,
        validation_mean_auroc=mean_auroc(auroc),
        thresholds=thresholds,
        seconds=time.monotonic() - started,
    )
