"""Hyper-parameter search per candidate (grid or random, k-fold CV on the training split),
then selection of the best candidate on the validation split."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    ParameterGrid,
    RandomizedSearchCV,
    StratifiedGroupKFold,
    StratifiedKFold,
)
from sklearn.pipeline import Pipeline

from ml.errors import MLError
from ml.estimators import build_pipeline, get_algorithm
from ml.evaluate import score_with
from ml.frames import FeatureSchema
from ml.metrics import METRICS
from ml.spec import ModelSpec


@dataclass(frozen=True)
class Trial:
    """One hyper-parameter setting of one candidate, with its CV fold scores."""

    algorithm: str
    params: dict[str, Any]
    fold_scores: list[float]

    @property
    def mean_score(self) -> float:
        return float(np.mean(self.fold_scores))

    @property
    def std_score(self) -> float:
        return float(np.std(self.fold_scores))


@dataclass
class CandidateResult:
    """The best setting of one algorithm, refitted on the training split."""

    algorithm: str
    params: dict[str, Any]
    pipeline: Pipeline
    trials: list[Trial]
    cv_score: float
    valid_score: float
    seconds: float


def make_scorer(metric_name: str, task: str) -> Callable[[Any, pd.DataFrame, np.ndarray], float]:
    metric = METRICS[metric_name]
    sign = 1.0 if metric.greater_is_better else -1.0

    def score(estimator: Any, x: pd.DataFrame, y: np.ndarray) -> float:
        return sign * score_with(metric_name, task, estimator, x, y)

    return score


def uses_groups(folds: Any) -> bool:
    return isinstance(folds, GroupKFold | StratifiedGroupKFold)


def cv_folds(spec: ModelSpec, y: np.ndarray, groups: np.ndarray | None) -> Any:
    n = spec.search.cv_folds
    if groups is not None and len(np.unique(groups)) < len(groups):
        # Several rows per entity: keep an entity's rows in one fold, or CV leaks.
        if spec.task == "classification":
            return StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=spec.seed)
        return GroupKFold(n_splits=n, shuffle=True, random_state=spec.seed)
    if spec.task == "classification":
        return StratifiedKFold(n_splits=n, shuffle=True, random_state=spec.seed)
    return KFold(n_splits=n, shuffle=True, random_state=spec.seed)


def search_candidate(
    spec: ModelSpec,
    algorithm_name: str,
    schema: FeatureSchema,
    train: tuple[pd.DataFrame, np.ndarray, np.ndarray | None],
    valid: tuple[pd.DataFrame, np.ndarray],
    progress: Callable[[str], None],
) -> CandidateResult:
    """Search one candidate's space by CV on ``train``; score its best setting on ``valid``."""
    started = time.perf_counter()
    algorithm = get_algorithm(spec.task, algorithm_name)
    grid = spec.grid_for(algorithm_name)
    pipeline = build_pipeline(algorithm, schema, seed=spec.seed)
    x_train, y_train, groups = train
    x_valid, y_valid = valid
    space = {f"model__{key}": values for key, values in grid.items()}
    settings = len(ParameterGrid(space)) if space else 1
    folds = cv_folds(spec, y_train, groups)
    search: GridSearchCV | RandomizedSearchCV
    if spec.search.method == "random" and settings > spec.search.n_iter:
        settings = spec.search.n_iter
        search = RandomizedSearchCV(
            pipeline,
            space,
            n_iter=settings,
            scoring=make_scorer(spec.metric_name, spec.task),
            cv=folds,
            refit=True,
            random_state=spec.seed,
            error_score="raise",
        )
    else:
        search = GridSearchCV(
            pipeline,
            space or [{}],
            scoring=make_scorer(spec.metric_name, spec.task),
            cv=folds,
            refit=True,
            error_score="raise",
        )
    progress(
        f"  {algorithm_name}: {settings} setting(s) x {spec.search.cv_folds} folds "
        f"= {settings * spec.search.cv_folds} fits on {len(x_train):,} rows"
    )
    fit_options = {"groups": groups} if uses_groups(folds) else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            search.fit(x_train, y_train, **fit_options)
        except ValueError as error:
            raise MLError(
                f"training {algorithm_name} failed: {error}",
                hint="check the feature table for columns the model cannot use",
            ) from error
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        progress(
            f"  {algorithm_name}: some fits stopped before converging "
            "(raise max_iter in the spec's search space if the scores suffer)"
        )
    sign = 1.0 if METRICS[spec.metric_name].greater_is_better else -1.0
    results = search.cv_results_
    trials = [
        Trial(
            algorithm=algorithm_name,
            params={k.removeprefix("model__"): _plain(v) for k, v in params.items()},
            fold_scores=[
                sign * float(results[f"split{fold}_test_score"][index])
                for fold in range(spec.search.cv_folds)
            ],
        )
        for index, params in enumerate(results["params"])
    ]
    best_params = {k.removeprefix("model__"): _plain(v) for k, v in search.best_params_.items()}
    best = search.best_estimator_
    valid_score = score_with(spec.metric_name, spec.task, best, x_valid, y_valid)
    cv_score = sign * float(search.best_score_)
    progress(
        f"  {algorithm_name}: best {json.dumps(best_params)}  "
        f"cv {spec.metric_name}={cv_score:.4f}  valid {spec.metric_name}={valid_score:.4f}"
    )
    return CandidateResult(
        algorithm_name,
        best_params,
        best,
        trials,
        cv_score,
        valid_score,
        time.perf_counter() - started,
    )


def search_clusters(
    spec: ModelSpec,
    algorithm_name: str,
    schema: FeatureSchema,
    x_train: pd.DataFrame,
    x_valid: pd.DataFrame,
    progress: Callable[[str], None],
) -> CandidateResult:
    """Fit every setting on ``train`` and keep the best silhouette on ``valid``."""
    started = time.perf_counter()
    algorithm = get_algorithm(spec.task, algorithm_name)
    grid = list(ParameterGrid(spec.grid_for(algorithm_name)))
    progress(f"  {algorithm_name}: {len(grid)} setting(s) on {len(x_train):,} rows")
    trials: list[Trial] = []
    best: tuple[float, dict[str, Any], Pipeline] | None = None
    for params in grid:
        pipeline = build_pipeline(algorithm, schema, seed=spec.seed)
        pipeline.set_params(**{f"model__{k}": v for k, v in params.items()})
        pipeline.fit(x_train)
        score = score_with(spec.metric_name, spec.task, pipeline, x_valid, None)
        plain = {k: _plain(v) for k, v in params.items()}
        trials.append(Trial(algorithm_name, plain, [score]))
        progress(f"    {json.dumps(plain)}: valid {spec.metric_name}={score:.4f}")
        if best is None or METRICS[spec.metric_name].better(score, best[0]):
            best = (score, plain, pipeline)
    assert best is not None
    return CandidateResult(
        algorithm_name,
        best[1],
        best[2],
        trials,
        best[0],
        best[0],
        time.perf_counter() - started,
    )


def select_best(spec: ModelSpec, candidates: list[CandidateResult]) -> CandidateResult:
    """The candidate with the best validation score (the first one on ties)."""
    metric = METRICS[spec.metric_name]
    best = candidates[0]
    for candidate in candidates[1:]:
        if metric.better(candidate.valid_score, best.valid_score):
            best = candidate
    return best


def _plain(value: Any) -> Any:
    """JSON-friendly parameter values (tuples become lists, numpy scalars Python)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
