"""Evaluation tables of a trained model: confusion matrices, ROC/PR/calibration curves,
learning curve, feature importance, residuals and cluster profiles.

Pure functions: a fitted pipeline and split frames in, Arrow tables out. Every table is
keyed by model_name and model_version; the registry writes them with the version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.model_selection import learning_curve
from sklearn.pipeline import Pipeline

from ml.dataset import Dataset
from ml.evaluate import predict
from ml.frames import FeatureSchema
from ml.metrics import METRICS
from ml.search import cv_folds, make_scorer, uses_groups
from ml.spec import ModelSpec

_KEY = [("model_name", pa.string()), ("model_version", pa.int64())]

SCHEMAS: dict[str, pa.Schema] = {
    "model_confusion_matrix": pa.schema(
        [
            *_KEY,
            ("split", pa.string()),
            ("threshold_kind", pa.string()),
            ("threshold", pa.float64()),
            ("actual_class", pa.string()),
            ("predicted_class", pa.string()),
            ("count", pa.int64()),
        ]
    ),
    "model_curves": pa.schema(
        [
            *_KEY,
            ("split", pa.string()),
            ("curve", pa.string()),
            ("class_label", pa.string()),
            ("point", pa.int64()),
            ("x", pa.float64()),
            ("y", pa.float64()),
            ("threshold", pa.float64()),
            ("count", pa.int64()),
        ]
    ),
    "model_learning_curve": pa.schema(
        [
            *_KEY,
            ("metric", pa.string()),
            ("train_size", pa.int64()),
            ("train_fraction", pa.float64()),
            ("train_score_mean", pa.float64()),
            ("train_score_std", pa.float64()),
            ("cv_score_mean", pa.float64()),
            ("cv_score_std", pa.float64()),
        ]
    ),
    "model_feature_importance": pa.schema(
        [
            *_KEY,
            ("kind", pa.string()),
            ("feature", pa.string()),
            ("importance", pa.float64()),
            ("importance_std", pa.float64()),
            ("rank", pa.int64()),
        ]
    ),
    "model_residuals": pa.schema(
        [
            *_KEY,
            ("split", pa.string()),
            ("statistic", pa.string()),
            ("value", pa.float64()),
        ]
    ),
    "model_prediction_bins": pa.schema(
        [
            *_KEY,
            ("split", pa.string()),
            ("bin", pa.int64()),
            ("count", pa.int64()),
            ("predicted_mean", pa.float64()),
            ("actual_mean", pa.float64()),
            ("predicted_min", pa.float64()),
            ("predicted_max", pa.float64()),
        ]
    ),
    "model_cluster_profiles": pa.schema(
        [
            *_KEY,
            ("cluster", pa.int64()),
            ("size", pa.int64()),
            ("feature", pa.string()),
            ("mean", pa.float64()),
            ("overall_mean", pa.float64()),
        ]
    ),
}

#: Threshold-free metrics choose the decision threshold by F1 instead.
_THRESHOLD_METRICS = {"accuracy", "precision", "recall", "f1"}


def _table(name: str, rows: list[dict[str, Any]], key: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist([{**key, **row} for row in rows], schema=SCHEMAS[name])


def _downsample(n: int, limit: int) -> np.ndarray:
    """At most ``limit`` evenly spread indices of ``n`` points, first and last included."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def _curve(kind: str, y: np.ndarray, score: np.ndarray, limit: int) -> list[dict[str, Any]]:
    if kind == "roc":
        x, yy, thresholds = skm.roc_curve(y, score)
    else:
        precision, recall, thresholds = skm.precision_recall_curve(y, score)
        # sklearn returns recall decreasing; store points by increasing recall.
        x, yy = recall[::-1], precision[::-1]
        thresholds = np.concatenate([[np.inf], thresholds[::-1]])
    keep = _downsample(len(x), limit)
    return [
        {
            "curve": kind,
            "point": i,
            "x": float(x[k]),
            "y": float(yy[k]),
            "threshold": None if not np.isfinite(thresholds[k]) else float(thresholds[k]),
            "count": None,
        }
        for i, k in enumerate(keep)
    ]


def _calibration(y: np.ndarray, score: np.ndarray) -> list[dict[str, Any]]:
    bins = np.linspace(0, 1, 11)
    index = np.clip(np.digitize(score, bins[1:-1]), 0, 9)
    counts = np.bincount(index, minlength=10)
    fraction, mean_predicted = calibration_curve(y, score, n_bins=10, strategy="uniform")
    populated = [b for b in range(10) if counts[b] > 0]
    return [
        {
            "curve": "calibration",
            "point": i,
            "x": float(mean_predicted[i]),
            "y": float(fraction[i]),
            "threshold": None,
            "count": int(counts[b]),
        }
        for i, b in enumerate(populated)
    ]


def curves(
    y: np.ndarray, proba: np.ndarray, classes: np.ndarray, limit: int
) -> list[dict[str, Any]]:
    """ROC, precision-recall and calibration points: the positive class of a binary model,
    every class (one versus rest) of a multiclass one."""
    labels = [classes[-1]] if len(classes) == 2 else list(classes)
    rows = []
    for label in labels:
        index = list(classes).index(label)
        actual = (y == label).astype(int)
        if actual.min() == actual.max():
            continue  # a class absent from this split has no curve
        score = proba[:, index]
        for row in [
            *_curve("roc", actual, score, limit),
            *_curve("pr", actual, score, limit),
            *_calibration(actual, score),
        ]:
            rows.append({**row, "class_label": str(label)})
    return rows


def choose_threshold(
    spec: ModelSpec, y: np.ndarray, score: np.ndarray, positive: Any
) -> tuple[str, float]:
    """The binary decision threshold that is best on validation: lowest cost when the spec
    gives costs, else best for the spec's metric (F1 for threshold-free metrics)."""
    actual = y == positive
    candidates = np.unique(np.quantile(score, np.linspace(0.01, 0.99, 99)))
    if spec.evaluation.cost is not None:
        cost = spec.evaluation.cost
        totals = [
            cost.false_positive * np.sum((score >= t) & ~actual)
            + cost.false_negative * np.sum((score < t) & actual)
            for t in candidates
        ]
        return "min_cost", float(candidates[int(np.argmin(totals))])
    metric = spec.metric_name if spec.metric_name in _THRESHOLD_METRICS else "f1"
    compute = METRICS[metric].compute
    classes = np.array([False, True])
    values = [compute(actual, score >= t, None, classes) for t in candidates]
    return f"best_{metric}", float(candidates[int(np.argmax(values))])


def confusion(
    y: np.ndarray, predicted: np.ndarray, classes: np.ndarray, *, kind: str, threshold: float | None
) -> list[dict[str, Any]]:
    matrix = skm.confusion_matrix(y, predicted, labels=classes)
    return [
        {
            "threshold_kind": kind,
            "threshold": threshold,
            "actual_class": str(actual),
            "predicted_class": str(guess),
            "count": int(matrix[i, j]),
        }
        for i, actual in enumerate(classes)
        for j, guess in enumerate(classes)
    ]


def learning_curve_rows(spec: ModelSpec, pipeline: Pipeline, data: Dataset) -> list[dict[str, Any]]:
    """Train and cross-validated scores at each training-set size, with the chosen params."""
    x, y = data.frames["train"], data.targets["train"]
    folds = cv_folds(spec, y if y is not None else np.zeros(len(x)), data.groups)
    extra = {"groups": data.groups} if uses_groups(folds) else {}
    sizes, train_scores, cv_scores = learning_curve(
        pipeline,
        x,
        y,
        train_sizes=np.array(spec.evaluation.learning_curve_sizes),
        cv=folds,
        scoring=make_scorer(spec.metric_name, spec.task),
        shuffle=True,
        random_state=spec.seed,
        **extra,
    )
    sign = 1.0 if METRICS[spec.metric_name].greater_is_better else -1.0
    largest = max(sizes)
    return [
        {
            "metric": spec.metric_name,
            "train_size": int(size),
            "train_fraction": float(size / largest),
            "train_score_mean": float(np.mean(sign * train)),
            "train_score_std": float(np.std(sign * train)),
            "cv_score_mean": float(np.mean(sign * held_out)),
            "cv_score_std": float(np.std(sign * held_out)),
        }
        for size, train, held_out in zip(sizes, train_scores, cv_scores, strict=True)
    ]


def importance_rows(spec: ModelSpec, pipeline: Pipeline, data: Dataset) -> list[dict[str, Any]]:
    """Permutation importance on validation, plus coefficients or native importances."""
    x, y = data.frames["valid"], data.targets["valid"]
    result = permutation_importance(
        pipeline,
        x,
        y,
        scoring=make_scorer(spec.metric_name, spec.task),
        n_repeats=spec.evaluation.permutation_repeats,
        random_state=spec.seed,
    )
    rows = _ranked("permutation", list(x.columns), result.importances_mean, result.importances_std)
    model = pipeline.named_steps["model"]
    names = list(pipeline.named_steps["prepare"].get_feature_names_out())
    if hasattr(model, "coef_"):
        coefficients = np.atleast_2d(model.coef_)
        # Multiclass: the largest absolute coefficient over classes, signed.
        strongest = coefficients[np.abs(coefficients).argmax(axis=0), np.arange(len(names))]
        rows += _ranked("coefficient", names, strongest, None, by_magnitude=True)
    elif hasattr(model, "feature_importances_"):
        rows += _ranked("native", names, model.feature_importances_, None)
    return rows


def _ranked(
    kind: str,
    names: list[str],
    values: np.ndarray,
    spread: np.ndarray | None,
    *,
    by_magnitude: bool = False,
) -> list[dict[str, Any]]:
    order = np.argsort(-(np.abs(values) if by_magnitude else values), kind="stable")
    return [
        {
            "kind": kind,
            "feature": names[i],
            "importance": float(values[i]),
            "importance_std": None if spread is None else float(spread[i]),
            "rank": rank + 1,
        }
        for rank, i in enumerate(order)
    ]


def residual_rows(y: np.ndarray, predicted: np.ndarray) -> list[dict[str, Any]]:
    residual = y - predicted
    statistics = {
        "mean": np.mean(residual),
        "std": np.std(residual),
        "mean_absolute": np.mean(np.abs(residual)),
        "p05": np.quantile(residual, 0.05),
        "p25": np.quantile(residual, 0.25),
        "median": np.median(residual),
        "p75": np.quantile(residual, 0.75),
        "p95": np.quantile(residual, 0.95),
    }
    return [{"statistic": k, "value": float(v)} for k, v in statistics.items()]


def prediction_bin_rows(
    y: np.ndarray, predicted: np.ndarray, bins: int = 10
) -> list[dict[str, Any]]:
    """Predicted versus actual means in deciles of the prediction."""
    order = np.argsort(predicted, kind="stable")
    rows = []
    for index, part in enumerate(np.array_split(order, min(bins, len(order)))):
        rows.append(
            {
                "bin": index + 1,
                "count": len(part),
                "predicted_mean": float(np.mean(predicted[part])),
                "actual_mean": float(np.mean(y[part])),
                "predicted_min": float(np.min(predicted[part])),
                "predicted_max": float(np.max(predicted[part])),
            }
        )
    return rows


def cluster_profile_rows(
    pipeline: Pipeline, x: pd.DataFrame, schema: FeatureSchema
) -> list[dict[str, Any]]:
    """Size and mean of every numeric feature (in its own units) per cluster."""
    labels = pipeline.predict(x)
    rows = []
    for cluster in np.unique(labels):
        members = x[labels == cluster]
        for feature in schema.numeric:
            rows.append(
                {
                    "cluster": int(cluster),
                    "size": len(members),
                    "feature": feature,
                    "mean": float(members[feature].astype(float).mean()),
                    "overall_mean": float(x[feature].astype(float).mean()),
                }
            )
    return rows


def evaluation_tables(
    spec: ModelSpec,
    pipeline: Pipeline,
    data: Dataset,
    *,
    key: dict[str, Any],
    progress: Callable[[str], None],
) -> dict[str, pa.Table]:
    """Every evaluation table of one model version."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in SCHEMAS}
    progress("  evaluation: learning curve, feature importance, curves")
    if spec.task == "clustering":
        rows["model_cluster_profiles"] = cluster_profile_rows(
            pipeline, pd.concat(list(data.frames.values())), data.schema
        )
        return {name: _table(name, r, key) for name, r in rows.items() if r}
    rows["model_learning_curve"] = learning_curve_rows(spec, pipeline, data)
    rows["model_feature_importance"] = importance_rows(spec, pipeline, data)
    predictions = {split: predict(pipeline, x) for split, x in data.frames.items()}
    classes = getattr(pipeline, "classes_", None)
    threshold: tuple[str, float] | None = None
    if classes is not None and len(classes) == 2:
        # Chosen on validation, then applied to every split.
        valid_y, (_, valid_proba) = data.targets["valid"], predictions["valid"]
        assert valid_y is not None and valid_proba is not None
        threshold = choose_threshold(spec, valid_y, valid_proba[:, 1], classes[1])
    for split, (predicted, proba) in predictions.items():
        y = data.targets[split]
        assert y is not None
        if spec.task == "regression":
            rows["model_residuals"] += [{"split": split, **r} for r in residual_rows(y, predicted)]
            rows["model_prediction_bins"] += [
                {"split": split, **r} for r in prediction_bin_rows(y, predicted)
            ]
            continue
        assert proba is not None and classes is not None
        rows["model_confusion_matrix"] += [
            {"split": split, **r}
            for r in confusion(
                y, predicted, classes, kind="default", threshold=0.5 if len(classes) == 2 else None
            )
        ]
        if threshold is not None:
            kind, cut = threshold
            chosen = np.where(proba[:, 1] >= cut, classes[1], classes[0])
            rows["model_confusion_matrix"] += [
                {"split": split, **r}
                for r in confusion(y, chosen, classes, kind=kind, threshold=cut)
            ]
        rows["model_curves"] += [
            {"split": split, **r} for r in curves(y, proba, classes, spec.evaluation.curve_points)
        ]
    return {name: _table(name, r, key) for name, r in rows.items() if r}
