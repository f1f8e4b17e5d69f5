import copy
from typing import Any

import pytest

from ml.errors import MLError
from ml.spec import models_from_manifest, parse_spec, select_models

VALID: dict[str, Any] = {
    "task": "classification",
    "entity_id": "customer_id",
    "target": "churned",
    "candidates": {"logistic_regression": {"C": [0.1, 1.0]}, "random_forest": None},
    "search": {"metric": "roc_auc", "cv_folds": 3},
}


def spec_with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(VALID)
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


def test_a_valid_spec_gets_defaults() -> None:
    spec = parse_spec("churn", VALID)
    assert (spec.split.train, spec.split.valid, spec.split.test) == (0.70, 0.15, 0.15)
    assert spec.split.method == "hash"
    assert spec.metric_name == "roc_auc"
    assert spec.grid_for("random_forest")  # the registry's default space


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"colour": "red"},
            r"(?s)exposure churn: .*ml\.colour: unknown key; valid keys: \[.*'candidates'",
        ),
        (
            {"split": {"train": 0.7, "valid": 0.15, "tst": 0.15}},
            r"ml\.split\.tst: unknown key; valid keys: \['method', 'test', 'train', 'valid'\]",
        ),
        (
            {"candidates": {"xgboost": None}},
            r"unknown classification algorithm 'xgboost'; choose from \[.*'logistic_regression'",
        ),
        (
            {"search": {"metric": "rmse"}},
            r"unknown classification metric 'rmse'; choose from \['accuracy', 'f1'",
        ),
        (
            {"split": {"train": 0.8, "valid": 0.15, "test": 0.15}},
            r"train \+ valid \+ test must sum to 1, got 0\.8 \+ 0\.15 \+ 0\.15 = 1\.1",
        ),
        ({"task": "forecasting"}, r"ml\.task: .*'classification', 'regression' or 'clustering'"),
        ({"target": None}, r"a classification model needs a `target` column"),
        (
            {"task": "clustering", "candidates": {"kmeans": None}, "search": {}},
            r"clustering takes no target",
        ),
        ({"split": {"method": "time"}}, r"split method `time` needs `time_column`"),
        (
            {"candidates": {"random_forest": {"depth": [3]}}},
            r"candidate random_forest: unknown parameter\(s\) \['depth'\]; valid: \[",
        ),
        ({"candidates": {"random_forest": {"max_depth": []}}}, r"empty search values"),
        ({"candidates": {}}, r"ml\.candidates: "),
        ({"score": {"into": "preds; drop table x"}}, r"not a valid table name"),
        ({"search": {"cv_folds": 1}}, r"ml\.search\.cv_folds: "),
    ],
)
def test_invalid_specs_name_the_exposure_key_and_choices(
    changes: dict[str, Any], expected: str
) -> None:
    with pytest.raises(MLError, match=expected) as caught:
        parse_spec("churn", spec_with(**changes))
    assert str(caught.value).startswith("exposure churn")


def test_a_spec_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(MLError, match=r"config\.meta\.ml must be a mapping"):
        parse_spec("churn", ["task", "classification"])


def _manifest(spec: dict[str, Any], depends_on: list[str]) -> dict[str, Any]:
    def node(name: str) -> dict[str, Any]:
        return {
            "unique_id": f"model.p.{name}",
            "name": name,
            "resource_type": "model",
            "schema": "main",
            "alias": name,
        }

    return {
        "nodes": {f"model.p.{n}": node(n) for n in ("features", "features_now", "other")},
        "exposures": {
            "exposure.p.churn": {
                "name": "churn",
                "type": "ml",
                "label": "Churn",
                "config": {"meta": {"ml": spec}},
                "depends_on": {"nodes": depends_on},
            },
            "exposure.p.dash": {"name": "dash", "type": "dashboard", "config": {}},
        },
    }


def test_relations_resolve_through_the_manifest() -> None:
    spec = spec_with(score={"relation": "ref('features_now')"}, relation="ref('features')")
    models = models_from_manifest(_manifest(spec, ["model.p.features", "model.p.features_now"]))
    assert list(models) == ["churn"]  # dashboards are not ML models
    model = models["churn"]
    assert str(model.training) == "main.features"
    assert str(model.scoring) == "main.features_now"
    assert model.predictions_table == "churn_predictions"


def test_single_dependency_is_the_training_relation() -> None:
    models = models_from_manifest(_manifest(VALID, ["model.p.features"]))
    assert str(models["churn"].training) == str(models["churn"].scoring) == "main.features"


@pytest.mark.parametrize(
    ("changes", "depends_on", "expected"),
    [
        ({}, ["model.p.features", "model.p.other"], r"depends_on has 2 models; say which one"),
        ({"relation": "ref('other')"}, ["model.p.features"], r"not in the exposure's depends_on"),
        ({"relation": "ref('nope')"}, ["model.p.features"], r"unknown model 'nope'"),
        ({"relation": "features"}, ["model.p.features"], r"must be written ref\('model_name'\)"),
    ],
)
def test_relation_errors(changes: dict[str, Any], depends_on: list[str], expected: str) -> None:
    with pytest.raises(MLError, match=expected):
        models_from_manifest(_manifest(spec_with(**changes), depends_on))


def test_an_ml_exposure_without_a_spec_is_an_error() -> None:
    manifest = _manifest(VALID, ["model.p.features"])
    manifest["exposures"]["exposure.p.churn"]["config"] = {}
    with pytest.raises(MLError, match=r"has type ml but no config\.meta\.ml"):
        models_from_manifest(manifest)


def test_spec_hash_changes_with_the_spec() -> None:
    first = models_from_manifest(_manifest(VALID, ["model.p.features"]))["churn"]
    changed = models_from_manifest(_manifest(spec_with(seed=7), ["model.p.features"]))["churn"]
    assert first.spec_hash != changed.spec_hash
    again = models_from_manifest(_manifest(VALID, ["model.p.features"]))["churn"]
    assert first.spec_hash == again.spec_hash


def test_selecting_unknown_models_lists_the_known_ones() -> None:
    models = models_from_manifest(_manifest(VALID, ["model.p.features"]))
    assert [m.name for m in select_models(models, None)] == ["churn"]
    with pytest.raises(
        MLError, match=r"unknown model\(s\) \['chrn'\]; declared ML exposures: \['churn'\]"
    ):
        select_models(models, ["chrn"])
