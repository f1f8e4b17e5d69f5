"""One explicit registry of evaluation metrics, shared by search, selection and reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

Task = str  # "classification" | "regression" | "clustering"


@dataclass(frozen=True)
class Metric:
    """A metric: how to compute it and which way is better.

    ``compute(y_true, y_pred, proba, classes)`` returns a float; ``proba`` is the
    class-probability matrix (columns in ``classes`` order) or ``None``.
    """

    name: str
    task: Task
    greater_is_better: bool
    needs_proba: bool
    compute: Callable[..., float]

    def better(self, candidate: float, incumbent: float) -> bool:
        """Whether ``candidate`` strictly beats ``incumbent``."""
        return candidate > incumbent if self.greater_is_better else candidate < incumbent


def _average(classes: np.ndarray) -> str:
    return "binary" if len(classes) == 2 else "macro"


def _positive(classes: np.ndarray) -> Any:
    return classes[-1]


def _averaged(score: Callable[..., Any]) -> Callable[..., float]:
    """A precision-like score: binary on the last class, macro-averaged for multiclass."""

    def compute(y: np.ndarray, pred: np.ndarray, proba: Any, classes: np.ndarray) -> float:
        kwargs = {"pos_label": _positive(classes)} if len(classes) == 2 else {}
        return float(score(y, pred, average=_average(classes), zero_division=0, **kwargs))

    return compute


_precision = _averaged(skm.precision_score)
_recall = _averaged(skm.recall_score)
_f1 = _averaged(skm.f1_score)


def _roc_auc(y: np.ndarray, pred: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    if len(classes) == 2:
        return float(skm.roc_auc_score(y == _positive(classes), proba[:, 1]))
    return float(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))


def _pr_auc(y: np.ndarray, pred: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    if len(classes) == 2:
        return float(skm.average_precision_score(y == _positive(classes), proba[:, 1]))
    return float(
        skm.average_precision_score(label_binarize(y, classes=classes), proba, average="macro")
    )


def _log_loss(y: np.ndarray, pred: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    return float(skm.log_loss(y, np.clip(proba, 1e-15, 1), labels=classes))


def _mse(y: np.ndarray, pred: np.ndarray, *_: Any) -> float:
    return float(skm.mean_squared_error(y, pred))


def _rmse(y: np.ndarray, pred: np.ndarray, *_: Any) -> float:
    return float(np.sqrt(skm.mean_squared_error(y, pred)))


def _mae(y: np.ndarray, pred: np.ndarray, *_: Any) -> float:
    return float(skm.mean_absolute_error(y, pred))


def _r2(y: np.ndarray, pred: np.ndarray, *_: Any) -> float:
    return float(skm.r2_score(y, pred))


def _silhouette(x: np.ndarray, labels: np.ndarray, *_: Any) -> float:
    if len(np.unique(labels)) < 2:
        return float("nan")
    sample = min(len(labels), 10_000)
    return float(skm.silhouette_score(x, labels, sample_size=sample, random_state=0))


def _accuracy(y: np.ndarray, pred: np.ndarray, *_: Any) -> float:
    return float(skm.accuracy_score(y, pred))


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("accuracy", "classification", True, False, _accuracy),
        Metric("precision", "classification", True, False, _precision),
        Metric("recall", "classification", True, False, _recall),
        Metric("f1", "classification", True, False, _f1),
        Metric("roc_auc", "classification", True, True, _roc_auc),
        Metric("pr_auc", "classification", True, True, _pr_auc),
        Metric("log_loss", "classification", False, True, _log_loss),
        Metric("mse", "regression", False, False, _mse),
        Metric("rmse", "regression", False, False, _rmse),
        Metric("mae", "regression", False, False, _mae),
        Metric("r2", "regression", True, False, _r2),
        Metric("silhouette", "clustering", True, False, _silhouette),
    ]
}

DEFAULT_METRIC = {"classification": "roc_auc", "regression": "rmse", "clustering": "silhouette"}


def metrics_for(task: Task) -> list[Metric]:
    return [m for m in METRICS.values() if m.task == task]


def compute_all(
    task: Task,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    classes: np.ndarray | None = None,
) -> dict[str, float]:
    """Every metric of the task; for clustering ``y_true`` is the feature matrix."""
    results: dict[str, float] = {}
    for metric in metrics_for(task):
        if metric.needs_proba and proba is None:
            continue
        results[metric.name] = metric.compute(y_true, y_pred, proba, classes)
    return results
