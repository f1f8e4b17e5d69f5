"""Predictions and metrics of a fitted pipeline, beside a naive baseline."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.pipeline import Pipeline

from ml.metrics import METRICS, compute_all


def classes_of(estimator: Any) -> np.ndarray | None:
    return getattr(estimator, "classes_", None)


def predict(estimator: Any, x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions and, for classifiers, the class-probability matrix."""
    prediction = np.asarray(estimator.predict(x))
    proba = estimator.predict_proba(x) if hasattr(estimator, "predict_proba") else None
    return prediction, proba


def transformed(pipeline: Pipeline, x: pd.DataFrame) -> np.ndarray:
    """The model's input after the pipeline's own (training-fitted) preprocessing."""
    return np.asarray(pipeline.named_steps["prepare"].transform(x), dtype=float)


def evaluate(task: str, estimator: Any, x: pd.DataFrame, y: np.ndarray | None) -> dict[str, float]:
    """Every metric of the task on one split."""
    prediction, proba = predict(estimator, x)
    if task == "clustering":
        return compute_all(task, transformed(estimator, x), prediction)
    assert y is not None
    return compute_all(task, y, prediction, proba, classes_of(estimator))


def score_with(
    metric_name: str, task: str, estimator: Any, x: pd.DataFrame, y: np.ndarray | None
) -> float:
    """One metric, as reported (not sign-flipped)."""
    metric = METRICS[metric_name]
    prediction, proba = predict(estimator, x)
    if task == "clustering":
        return metric.compute(transformed(estimator, x), prediction)
    return metric.compute(y, prediction, proba, classes_of(estimator))


def fit_baseline(task: str, x: pd.DataFrame, y: np.ndarray) -> Any:
    """Majority class (with class priors as probabilities) or the training mean."""
    baseline = DummyClassifier(strategy="prior") if task == "classification" else DummyRegressor()
    return baseline.fit(x, y)


def cluster_sizes(labels: np.ndarray) -> dict[str, float]:
    values, counts = np.unique(labels, return_counts=True)
    return {f"size_cluster_{int(v)}": float(c) for v, c in zip(values, counts, strict=True)}
