"""One explicit registry of algorithms, and the preprocessing every pipeline shares.

Everything learned from data (imputation, scaling, one-hot vocabularies) lives inside the
returned scikit-learn pipeline, so it is fitted on the training split only and travels
with the model into scoring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from ml.frames import FeatureSchema


@dataclass(frozen=True)
class Algorithm:
    """A named estimator family for one task, with its default search space.

    ``build(seed)`` returns an unfitted estimator; ``default_grid`` maps its parameter
    names to the values searched when the spec gives none.
    """

    name: str
    task: str
    build: Callable[[int], BaseEstimator]
    default_grid: dict[str, list[Any]] = field(default_factory=dict)
    scale_numeric: bool = True


def _for_both_tasks(
    name: str,
    classifier: Callable[[int], BaseEstimator],
    regressor: Callable[[int], BaseEstimator],
    grid: dict[str, list[Any]],
    *,
    scale_numeric: bool,
) -> list[Algorithm]:
    """The classifier and the regressor of one family share a name and a search space."""
    return [
        Algorithm(name, "classification", classifier, grid, scale_numeric=scale_numeric),
        Algorithm(name, "regression", regressor, grid, scale_numeric=scale_numeric),
    ]


ALGORITHMS: dict[tuple[str, str], Algorithm] = {
    (a.task, a.name): a
    for a in [
        Algorithm(
            "logistic_regression",
            "classification",
            lambda seed: LogisticRegression(max_iter=2000, random_state=seed),
            {"C": [0.01, 0.1, 1.0, 10.0]},
        ),
        Algorithm(
            "ridge_regression",
            "regression",
            lambda seed: Ridge(random_state=seed),
            {"alpha": [0.1, 1.0, 10.0, 100.0]},
        ),
        *_for_both_tasks(
            "decision_tree",
            lambda seed: DecisionTreeClassifier(random_state=seed),
            lambda seed: DecisionTreeRegressor(random_state=seed),
            {"max_depth": [4, 8, 12], "min_samples_leaf": [1, 20]},
            scale_numeric=False,
        ),
        *_for_both_tasks(
            "random_forest",
            lambda seed: RandomForestClassifier(n_estimators=200, n_jobs=-1, random_state=seed),
            lambda seed: RandomForestRegressor(n_estimators=200, n_jobs=-1, random_state=seed),
            {"max_depth": [8, None], "min_samples_leaf": [1, 5]},
            scale_numeric=False,
        ),
        *_for_both_tasks(
            "hist_gradient_boosting",
            lambda seed: HistGradientBoostingClassifier(random_state=seed),
            lambda seed: HistGradientBoostingRegressor(random_state=seed),
            {"learning_rate": [0.05, 0.1], "max_leaf_nodes": [15, 31]},
            scale_numeric=False,
        ),
        *_for_both_tasks(
            "mlp",
            lambda seed: MLPClassifier(max_iter=300, early_stopping=True, random_state=seed),
            lambda seed: MLPRegressor(max_iter=300, early_stopping=True, random_state=seed),
            {"hidden_layer_sizes": [[32], [64, 32]], "alpha": [1e-4, 1e-2]},
            scale_numeric=True,
        ),
        Algorithm(
            "kmeans",
            "clustering",
            lambda seed: KMeans(n_init=10, random_state=seed),
            {"n_clusters": [2, 3, 4, 5, 6, 7, 8]},
        ),
    ]
}


def algorithm_names(task: str) -> list[str]:
    return sorted(name for (t, name) in ALGORITHMS if t == task)


def get_algorithm(task: str, name: str) -> Algorithm:
    """Look an algorithm up; an unknown name lists the valid ones for the task."""
    try:
        return ALGORITHMS[(task, name)]
    except KeyError:
        raise KeyError(
            f"unknown {task} algorithm {name!r}; choose from {algorithm_names(task)}"
        ) from None


def preprocessor(schema: FeatureSchema, *, scale_numeric: bool) -> ColumnTransformer:
    """Impute, scale and one-hot encode the feature columns, as the schema types them."""
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if scale_numeric:
        numeric_steps.append(("scale", StandardScaler()))
    transformers: list[tuple[str, Any, list[str]]] = []
    if schema.numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), schema.numeric))
    if schema.categorical:
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
                (
                    "one_hot",
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False, min_frequency=5),
                ),
            ]
        )
        transformers.append(("categorical", categorical, schema.categorical))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)


def build_pipeline(algorithm: Algorithm, schema: FeatureSchema, *, seed: int) -> Pipeline:
    """The unfitted pipeline: preprocessing then the estimator (its step is named ``model``)."""
    return Pipeline(
        [
            ("prepare", preprocessor(schema, scale_numeric=algorithm.scale_numeric)),
            ("model", algorithm.build(seed)),
        ]
    )
