"""Search and selection on constructed data where the right answer is known."""

import numpy as np
import pandas as pd
import pytest

from ml.estimators import ALGORITHMS, build_pipeline, get_algorithm
from ml.frames import FeatureSchema
from ml.metrics import METRICS, compute_all
from ml.search import search_candidate, select_best
from ml.spec import parse_spec

SCHEMA = FeatureSchema(["x1", "x2", "noise"], ["colour"], {})


def _data(n: int, seed: int, kind: str) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "colour": rng.choice(np.array(["red", "green", None], dtype=object), size=n),
        }
    )
    x["colour"] = x["colour"].astype(object)
    if kind == "xor":
        y = ((x["x1"] > 0) ^ (x["x2"] > 0)).to_numpy()
    else:
        y = (3 * x["x1"] - 2 * x["x2"] + rng.normal(scale=0.1, size=n)).to_numpy()
    return x, y


def test_nonlinear_problem_selects_a_tree_model_over_a_linear_one() -> None:
    spec = parse_spec(
        "xor",
        {
            "task": "classification",
            "entity_id": "id",
            "target": "y",
            "candidates": {
                "logistic_regression": {"C": [1.0]},
                "hist_gradient_boosting": {"learning_rate": [0.1]},
            },
            "search": {"cv_folds": 3, "metric": "roc_auc"},
        },
    )
    x, y = _data(1500, 0, "xor")
    xv, yv = _data(500, 1, "xor")
    results = [
        search_candidate(spec, name, SCHEMA, (x, y, None), (xv, yv), lambda _: None)
        for name in spec.candidates
    ]
    scores = {r.algorithm: r.valid_score for r in results}
    assert scores["logistic_regression"] < 0.65 < 0.9 < scores["hist_gradient_boosting"]
    assert select_best(spec, results).algorithm == "hist_gradient_boosting"
    # every trial and fold is kept
    assert [len(t.fold_scores) for r in results for t in r.trials] == [3, 3]


def test_grid_search_picks_the_right_regularisation() -> None:
    spec = parse_spec(
        "linear",
        {
            "task": "regression",
            "entity_id": "id",
            "target": "y",
            "candidates": {"ridge_regression": {"alpha": [0.01, 100_000.0]}},
            "search": {"cv_folds": 4, "metric": "rmse"},
        },
    )
    x, y = _data(800, 2, "linear")
    xv, yv = _data(300, 3, "linear")
    result = search_candidate(
        spec, "ridge_regression", SCHEMA, (x, y, None), (xv, yv), lambda _: None
    )
    assert result.params == {"alpha": 0.01}
    assert result.valid_score < 0.2  # rmse near the noise level
    by_alpha = {t.params["alpha"]: t.mean_score for t in result.trials}
    assert by_alpha[0.01] < by_alpha[100_000.0]  # reported as rmse, not negated


def test_random_search_respects_its_budget() -> None:
    spec = parse_spec(
        "budget",
        {
            "task": "regression",
            "entity_id": "id",
            "target": "y",
            "candidates": {
                "decision_tree": {"max_depth": [2, 3, 4, 5, 6], "min_samples_leaf": [1, 5]}
            },
            "search": {"method": "random", "n_iter": 3, "cv_folds": 2},
        },
    )
    x, y = _data(300, 4, "linear")
    result = search_candidate(spec, "decision_tree", SCHEMA, (x, y, None), (x, y), lambda _: None)
    assert len(result.trials) == 3


def test_group_folds_keep_an_entity_out_of_its_own_validation_fold() -> None:
    spec = parse_spec(
        "grouped",
        {
            "task": "regression",
            "entity_id": "id",
            "target": "y",
            "candidates": {"ridge_regression": {"alpha": [1.0]}},
            "search": {"cv_folds": 3},
        },
    )
    x, y = _data(600, 5, "linear")
    groups = np.repeat(np.arange(100), 6)
    messages: list[str] = []
    result = search_candidate(
        spec, "ridge_regression", SCHEMA, (x, y, groups), (x, y), messages.append
    )
    assert len(result.trials[0].fold_scores) == 3
    assert any("3 folds" in m for m in messages)


@pytest.mark.parametrize("key", sorted(ALGORITHMS))
def test_every_registered_algorithm_fits_with_its_default_space(key: tuple[str, str]) -> None:
    task, name = key
    algorithm = get_algorithm(task, name)
    x, y = _data(200, 6, "xor" if task == "classification" else "linear")
    pipeline = build_pipeline(algorithm, SCHEMA, seed=0)
    first = {k: v[0] for k, v in algorithm.default_grid.items()}
    pipeline.set_params(**{f"model__{k}": v for k, v in first.items()})
    pipeline.fit(x) if task == "clustering" else pipeline.fit(x, y)
    assert len(pipeline.predict(x)) == 200


def test_metrics_match_scikit_learn_for_multiclass() -> None:
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    y = rng.choice(np.array(["a", "b", "c"]), size=300)
    proba = rng.dirichlet([1, 1, 1], size=300)
    classes = np.array(["a", "b", "c"])
    pred = classes[proba.argmax(axis=1)]
    values = compute_all("classification", y, pred, proba, classes)
    assert values["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert values["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert values["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=classes))
    assert METRICS["log_loss"].better(0.1, 0.2) and METRICS["roc_auc"].better(0.9, 0.8)
