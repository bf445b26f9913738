"""Ranking metrics and decision thresholds, in plain numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Thresholds are kept strictly inside (0, 1) so a sigmoid output can always fall on either side.
THRESHOLD_FLOOR = 1e-4
THRESHOLD_CEIL = 1.0 - 1e-4
DEFAULT_THRESHOLD = 0.5


class MetricError(ValueError):
    """Scores a metric cannot rank: NaN or infinite values (a diverged or broken model)."""


def _finite_scores(scores: npt.ArrayLike) -> FloatArray:
    """Scores as float64; MetricError when any is NaN or infinite.

    NaN has no place in a ranking: sorted anywhere, it would turn a broken model into an AUROC
    near 0.5 and a threshold that looks chosen. Infinite scores are refused for the same reason
    (an overflowed logit carries no order among its peers).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    finite = np.isfinite(s)
    if not finite.all():
        nan = int(np.isnan(s).sum())
        raise MetricError(
            f"{s.size - int(finite.sum())} of {s.size} scores are not finite "
            f"({nan} NaN, {s.size - int(finite.sum()) - nan} infinite)"
        )
    return s


def rankdata(values: npt.ArrayLike) -> FloatArray:
    """Ranks starting at 1, ties given the average of the ranks they span."""
    x = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Boundaries of runs of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    average = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def auroc(targets: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """Area under the ROC curve via the Mann-Whitney U statistic.

    Ties count one half. Returns None when only one class is present (AUROC undefined);
    MetricError when a score is NaN or infinite.
    """
    y = np.asarray(targets).ravel().astype(bool)
    s = _finite_scores(scores)
    if y.shape != s.shape:
        raise ValueError(f"targets {y.shape} and scores {s.shape} differ in shape")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = float(rankdata(s)[y].sum())
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def youden_threshold(targets: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """The score t maximising Youden's J = TPR - FPR for the rule "positive iff p >= t".

    Candidates are the distinct observed scores; on a tie in J the higher threshold wins (fewer
    false positives). The result is clipped into (0, 1); DEFAULT_THRESHOLD is returned when only
    one class is present; MetricError when a score is NaN or infinite.
    """
    y = np.asarray(targets).ravel().astype(bool)
    s = _finite_scores(scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return DEFAULT_THRESHOLD
    order = np.argsort(-s, kind="mergesort")
    s_desc = s[order]
    y_desc = y[order]
    tp = np.cumsum(y_desc)
    fp = np.cumsum(~y_desc)
    # Only the last position of each run of equal scores is a valid cut.
    last_of_run = np.r_[s_desc[1:] != s_desc[:-1], True]
    j = tp[last_of_run] / n_pos - fp[last_of_run] / n_neg
    candidates = s_desc[last_of_run]
    best = int(np.argmax(j))  # first maximum = highest threshold, candidates are descending
    return float(np.clip(candidates[best], THRESHOLD_FLOOR, THRESHOLD_CEIL))


def per_label_auroc(
    targets: npt.ArrayLike, scores: npt.ArrayLike, labels: Sequence[str]
) -> dict[str, float | None]:
    """AUROC for each column of an (n, labels) matrix; MetricError names a label with NaN/inf."""
    y = np.asarray(targets)
    s = np.asarray(scores)
    result: dict[str, float | None] = {}
    for i, label in enumerate(labels):
        try:
            result[label] = auroc(y[:, i], s[:, i])
        except MetricError as error:
            raise MetricError(f"AUROC of {label}: {error}") from error
    return result


def per_label_thresholds(targets: npt.ArrayLike, scores: npt.ArrayLike) -> list[float]:
    """Youden's J threshold for each column of an (n, labels) matrix."""
    y = np.asarray(targets)
    s = np.asarray(scores)
    thresholds: list[float] = []
    for i in range(y.shape[1]):
        try:
            thresholds.append(youden_threshold(y[:, i], s[:, i]))
        except MetricError as error:
            raise MetricError(f"threshold of column {i}: {error}") from error
    return thresholds


def mean_auroc(values: dict[str, float | None]) -> float | None:
    """Mean over the labels whose AUROC is defined."""
    defined = [v for v in values.values() if v is not None]
    return float(np.mean(defined)) if defined else None
