"""Anomaly detection metrics, side by side: the published protocol and the honest one.

One Fits All's Table 2 (as Anomaly Transformer and TimesNet before it) thresholds the anomaly
scores at a percentile of the scores of the training *and test* data together, then applies
*point adjustment* (a true anomaly segment counts as found whole if one of its points is
flagged) before computing F1. Both inflate F1: the first lets the test scores choose their own
threshold, the second turns one lucky point into a whole segment of true positives (Kim et al.
2022 show random scores reach high point-adjusted F1). So every result here holds:

    f1              threshold from the training and validation scores only, no adjustment
    f1_pa           the same threshold, point-adjusted
    f1_published    threshold from the training and test scores (the published protocol), no adjustment
    f1_pa_published the published protocol: that threshold, point-adjusted (the number in the tables)
    auc_pr          average precision: no threshold, no adjustment
    (and precision / recall for f1 and f1_pa_published)

`ratio` is the percentage of points above the threshold (One Fits All: 0.5 for SMD, 2 for MSL, 1 for
SMAP, PSM and SWaT).
`random_baseline` scores every point with uniform noise and reports the same metrics, averaged
over draws: how much of a number the protocol alone produces.
"""

from __future__ import annotations

import numpy as np


def point_adjust(flagged: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """flagged (N,) bool with every true anomaly segment (a run of labels == 1) that holds one flagged
    point flagged whole, as the published code does."""
    adjusted = flagged.astype(bool).copy()
    labels = labels.astype(bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], labels.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2]):                        # segments [start, stop)
        if adjusted[start:stop].any():
            adjusted[start:stop] = True
    return adjusted


def precision_recall_f1(flagged: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """Binary precision, recall and F1 of the anomalous class (0 where undefined)."""
    flagged, labels = flagged.astype(bool), labels.astype(bool)
    hits = float((flagged & labels).sum())
    precision = hits / flagged.sum() if flagged.any() else 0.0
    recall = hits / labels.sum() if labels.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(precision), float(recall), float(f1)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve (scikit-learn's average precision); nan without anomalies."""
    from sklearn.metrics import average_precision_score

    labels = labels.astype(bool)
    return float(average_precision_score(labels, scores)) if labels.any() else float("nan")


def detection_metrics(fit_scores: np.ndarray, train_scores: np.ndarray, test_scores: np.ndarray,
                      labels: np.ndarray, ratio: float) -> dict[str, float]:
    """Every metric of the module docstring. fit_scores: the training and validation points' scores
    (the honest threshold's); train_scores: the training file's (the published threshold pools them
    with the test scores; fpt.tasks.anomaly passes the same points); test_scores and labels (M,)."""
    honest = float(np.percentile(fit_scores, 100 - ratio))
    published = float(np.percentile(np.concatenate([train_scores, test_scores]), 100 - ratio))
    flagged, flagged_published = test_scores > honest, test_scores > published
    p, r, f1 = precision_recall_f1(flagged, labels)
    p_pub, r_pub, f1_pa_published = precision_recall_f1(point_adjust(flagged_published, labels), labels)
    return {"f1": f1, "precision": p, "recall": r,
            "f1_pa": precision_recall_f1(point_adjust(flagged, labels), labels)[2],
            "f1_published": precision_recall_f1(flagged_published, labels)[2],
            "f1_pa_published": f1_pa_published, "precision_pa_published": p_pub, "recall_pa_published": r_pub,
            "auc_pr": average_precision(test_scores, labels), "threshold": honest, "threshold_published": published,
            "flagged_share": float(flagged.mean())}


def random_baseline(fit_points: int, train_points: int, labels: np.ndarray, ratio: float, seed: int,
                    draws: int = 10) -> dict[str, float]:
    """detection_metrics of uniform random scores, averaged over `draws` seeded draws."""
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(draws):
        train = rng.random(train_points)
        fit = np.concatenate([train, rng.random(fit_points - train_points)]) if fit_points > train_points else train
        runs.append(detection_metrics(fit, train, rng.random(len(labels)), labels, ratio))
    return {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}


HEADLINES = ("f1", "f1_pa", "f1_published", "f1_pa_published", "auc_pr")  # what reports show, in this order
