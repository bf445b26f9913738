"""The evaluation report of a run, as JSON and as markdown laid out like CheXNet's table.

CheXNet (Rajpurkar et al., 2017) compared per-pathology test AUROC with Wang et al. (2017) and
Yao et al. (2017) in one table; the markdown here keeps those three published columns as context
and adds this run's test and validation AUROC, the decision threshold chosen on validation and
the sensitivity and specificity those thresholds give on the test set. The published figures come
from the real NIH images with their authors' own splits (CheXNet: a random patient-wise 70/10/20
split); a run on synthetic data or on another split is not comparable with them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from thorax_trainer.contract import LABELS
from thorax_trainer.metrics import mean_auroc, per_label_auroc

# Per-label test AUROC as published (Wang et al. 2017; Yao et al. 2017; CheXNet 2017).
PUBLISHED: dict[str, dict[str, float]] = {
    "Wang et al. (2017)": dict(
        zip(
            LABELS,
            (
                0.716,
                0.807,
                0.784,
                0.609,
                0.706,
                0.671,
                0.633,
                0.806,
                0.708,
                0.835,
                0.815,
                0.769,
                0.708,
                0.767,
            ),
            strict=True,
        )
    ),
    "Yao et al. (2017)": dict(
        zip(
            LABELS,
            (
                0.772,
                0.904,
                0.859,
                0.695,
                0.792,
                0.717,
                0.713,
                0.841,
                0.788,
                0.882,
                0.829,
                0.767,
                0.765,
                0.914,
            ),
            strict=True,
        )
    ),
    "CheXNet (2017)": dict(
        zip(
            LABELS,
            (
                0.809,
                0.925,
                0.864,
                0.735,
                0.868,
                0.780,
                0.768,
                0.889,
                0.790,
                0.888,
                0.937,
                0.805,
                0.806,
                0.916,
            ),
            strict=True,
        )
    ),
}


def rates_at_thresholds(
    targets: npt.ArrayLike, scores: npt.ArrayLike, thresholds: list[float]
) -> dict[str, dict[str, float | None]]:
    """Per label: sensitivity and specificity of "positive iff p >= threshold"."""
    y = np.asarray(targets).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    out: dict[str, dict[str, float | None]] = {}
    for i, label in enumerate(LABELS):
        predicted = s[:, i] >= thresholds[i]
        positives, negatives = y[:, i], ~y[:, i]
        out[label] = {
            "sensitivity": float(predicted[positives].mean()) if positives.any() else None,
            "specificity": float((~predicted[negatives]).mean()) if negatives.any() else None,
        }
    return out


def evaluation(
    targets: npt.ArrayLike, scores: npt.ArrayLike, thresholds: list[float] | None = None
) -> dict[str, Any]:
    """AUROC per label and mean, positives per label, and rates at ``thresholds`` if given."""
    y = np.asarray(targets)
    auroc = per_label_auroc(y, scores, LABELS)
    result: dict[str, Any] = {
        "images": int(y.shape[0]),
        "positives": {label: int(y[:, i].sum()) for i, label in enumerate(LABELS)},
        "auroc": auroc,
        "meanAuroc": mean_auroc(auroc),
    }
    if thresholds is not None:
        result["atThresholds"] = rates_at_thresholds(y, scores, thresholds)
    return result


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _excluded(counts: Mapping[str, int]) -> str:
    if not counts:
        return "none"
    details = ", ".join(f"{reason} {count}" for reason, count in counts.items())
    return f"{sum(counts.values())} images ({details})"


def _published_mean(column: Mapping[str, float]) -> float:
    return float(np.mean(list(column.values())))


def markdown(report: Mapping[str, Any]) -> str:
    """The report as a markdown document."""
    test = report.get("test") or {}
    validation = report["validation"]
    thresholds = report["thresholds"]
    rates = test.get("atThresholds", {})
    published = list(PUBLISHED)
    header = [
        "Pathology",
        *published,
        "This run (test)",
        "This run (validation)",
        "Threshold",
        "Test sens. / spec.",
        "Test positives",
    ]
    lines = [
        f"# Evaluation: {report['run']}",
        "",
        f"- data: {report['dataset']} ({report['split']} split; "
        f"{report['images']['train']} train / {report['images']['validation']} validation / "
        f"{report['images']['test']} test images)",
        f"- excluded from the splits: {_excluded(report.get('excluded') or {})}",
        f"- model: {report['backbone']} at {report['networkSize']} px, "
        f"initialisation: {report['initialisation']}",
        f"- best epoch {report['bestEpoch']} of {report['epochsRun']}"
        f"{' (stopped early)' if report.get('stoppedEarly') else ''}; "
        "evaluation without augmentation",
        f"- thresholds: {report['thresholdRule']}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for i, label in enumerate(LABELS):
        rate = rates.get(label, {})
        sens, spec = rate.get("sensitivity"), rate.get("specificity")
        cells = [
            label,
            *(_cell(PUBLISHED[name][label]) for name in published),
            _cell((test.get("auroc") or {}).get(label)),
            _cell(validation["auroc"].get(label)),
            f"{thresholds[i]:.4f}",
            "—" if sens is None or spec is None else f"{sens:.2f} / {spec:.2f}",
            str((test.get("positives") or {}).get(label, "—")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        "| **mean** | "
        + " | ".join(f"**{_published_mean(PUBLISHED[name]):.3f}**" for name in published)
        + f" | **{_cell(test.get('meanAuroc'))}** | **{_cell(validation['meanAuroc'])}** |  |  |  |"
    )
    lines += [
        "",
        "The three published columns are test AUROC on the real ChestX-ray14 images, each with "
        "its authors' split (CheXNet: random patient-wise 70/10/20). They are context, not a "
        "target this run claims: compare like with like (same images, same split).",
        "",
    ]
    return "\n".join(lines)


def write_report(run_dir: Path, report: Mapping[str, Any]) -> tuple[Path, Path]:
    json_path = run_dir / "report.json"
    md_path = run_dir / "report.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path
