from __future__ import annotations

import itertools

import numpy as np
import pytest

from thorax_trainer.metrics import (
    DEFAULT_THRESHOLD,
    MetricError,
    auroc,
    mean_auroc,
    per_label_auroc,
    per_label_thresholds,
    rankdata,
    youden_threshold,
)


def brute_force_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting one half."""
    pos = s[y == 1]
    neg = s[y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_rankdata_averages_ties() -> None:
    np.testing.assert_array_equal(rankdata([10, 20, 20, 5, 20]), [2.0, 4.0, 4.0, 1.0, 4.0])
    np.testing.assert_array_equal(rankdata([3.0]), [1.0])


def test_auroc_extremes_and_ties() -> None:
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auroc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert auroc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # One positive above two negatives, one positive tied with one of them: (2 + 1.5) / 4.
    assert auroc([1, 1, 0, 0], [0.9, 0.3, 0.3, 0.1]) == pytest.approx(0.875)


def test_auroc_matches_pairwise_definition_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(5, 60))
        y = (rng.random(n) < 0.3).astype(int)
        y[0], y[1] = 0, 1
        s = np.round(rng.random(n), 1)  # coarse values force many ties
        assert auroc(y, s) == pytest.approx(brute_force_auroc(y, s), abs=1e-12)


def test_auroc_undefined_for_a_single_class() -> None:
    assert auroc([0, 0, 0], [0.1, 0.2, 0.3]) is None
    assert auroc([1, 1], [0.1, 0.2]) is None


def test_auroc_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        auroc([0, 1, 1], [0.1, 0.2])


def test_youden_threshold_separates_a_separable_set() -> None:
    y = [0, 0, 0, 1, 1]
    s = [0.1, 0.2, 0.3, 0.7, 0.8]
    t = youden_threshold(y, s)
    assert t == pytest.approx(0.7)
    predicted = np.asarray(s) >= t
    np.testing.assert_array_equal(predicted, np.asarray(y, dtype=bool))


def test_youden_threshold_is_inside_the_open_unit_interval() -> None:
    assert 0.0 < youden_threshold([0, 1], [0.0, 1.0]) < 1.0
    assert youden_threshold([0, 1], [0.0, 1.0]) == pytest.approx(1.0 - 1e-4)
    assert youden_threshold([0, 0], [0.2, 0.4]) == DEFAULT_THRESHOLD


def test_youden_threshold_maximises_j_over_all_cuts() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(200) < 0.2).astype(int)
    s = np.clip(rng.normal(0.4 + 0.2 * y, 0.15), 0.01, 0.99)
    t = youden_threshold(y, s)

    def j(cut: float) -> float:
        p = s >= cut
        return float(p[y == 1].mean() - p[y == 0].mean())

    assert j(t) == pytest.approx(max(j(c) for c in np.unique(s)))


def test_per_label_helpers() -> None:
    y = np.array([[0, 1], [1, 1], [0, 1], [1, 1]])
    s = np.array([[0.1, 0.5], [0.9, 0.4], [0.2, 0.3], [0.8, 0.2]])
    values = per_label_auroc(y, s, ["A", "B"])
    assert values == {"A": 1.0, "B": None}
    assert mean_auroc(values) == 1.0
    assert mean_auroc({"A": None}) is None
    thresholds = per_label_thresholds(y, s)
    assert thresholds[0] == pytest.approx(0.8)
    assert thresholds[1] == DEFAULT_THRESHOLD


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_are_an_error_not_a_coin_toss(bad: float) -> None:
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(50), np.ones(50)]
    s = rng.random(100)
    s[::2] = bad  # half the scores broken: a ranking would put them all at one end
    with pytest.raises(MetricError, match="50 of 100 scores are not finite"):
        auroc(y, s)
    with pytest.raises(MetricError, match="not finite"):
        youden_threshold(y, s)
    # One bad score is enough, even where AUROC would otherwise be undefined (one class).
    with pytest.raises(MetricError, match="1 of 3 scores are not finite"):
        auroc([0, 0, 0], [0.1, bad, 0.3])


def test_per_label_helpers_name_the_label_with_non_finite_scores() -> None:
    y = np.array([[0, 1], [1, 0], [0, 1], [1, 0]])
    s = np.array([[0.1, 0.5], [0.9, np.nan], [0.2, 0.3], [0.8, 0.2]])
    with pytest.raises(MetricError, match=r"AUROC of B: 1 of 4 scores are not finite \(1 NaN, 0"):
        per_label_auroc(y, s, ["A", "B"])
    with pytest.raises(MetricError, match="threshold of column 1"):
        per_label_thresholds(y, s)
