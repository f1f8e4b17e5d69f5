"""Evaluation tables, reports and the dbt sources over them, on known data."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from ml.dbt import run_dbt
from ml.project import Project
from ml.registry import Registry
from ml.spec import MLModel, Relation, parse_spec
from ml.train import train_model
from ml.workflow import Workspace, report, train
from tests.conftest import open_warehouse
from tests.e2e.conftest import table

pytestmark = pytest.mark.slow


def _rows(project: Project, name: str, model: str) -> list[dict[str, Any]]:
    return [r for r in table(project, name).to_pylist() if r["model_name"] == model]


def _version(project: Project, model: str) -> dict[str, Any]:
    return next(r for r in table(project, "model_versions").to_pylist() if r["model_name"] == model)


@pytest.mark.parametrize("model", ["bank_term_deposit", "customer_high_value"])
def test_confusion_matrices_sum_to_the_split_size(trained_template: Project, model: str) -> None:
    version = _version(trained_template, model)
    cells = _rows(trained_template, "model_confusion_matrix", model)
    kinds = {r["threshold_kind"] for r in cells}
    assert kinds == {"default", "best_f1"}  # roc_auc is threshold-free: F1 picks the cut
    for split in ("train", "valid", "test"):
        for kind in kinds:
            total = sum(
                r["count"] for r in cells if r["split"] == split and r["threshold_kind"] == kind
            )
            assert total == version[f"rows_{split}"], (split, kind)


def test_roc_auc_integrated_from_the_stored_points_equals_the_metric(
    trained_template: Project,
) -> None:
    for model in ("bank_term_deposit", "customer_high_value"):
        points = sorted(
            (
                r
                for r in _rows(trained_template, "model_curves", model)
                if r["curve"] == "roc" and r["split"] == "test"
            ),
            key=lambda r: r["point"],
        )
        assert 10 <= len(points) <= 200
        area = float(np.trapezoid([p["y"] for p in points], [p["x"] for p in points]))
        metric = next(
            r["value"]
            for r in _rows(trained_template, "model_metrics", model)
            if r["split"] == "test" and r["metric"] == "roc_auc"
        )
        assert area == pytest.approx(metric, abs=0.005), model
        calibration = [
            r
            for r in _rows(trained_template, "model_curves", model)
            if r["curve"] == "calibration" and r["split"] == "test"
        ]
        assert (
            sum(r["count"] for r in calibration) == _version(trained_template, model)["rows_test"]
        )


def test_learning_curve_has_the_configured_sizes(trained_template: Project) -> None:
    rows = sorted(
        _rows(trained_template, "model_learning_curve", "bank_term_deposit"),
        key=lambda r: r["train_size"],
    )
    configured = [0.1, 0.325, 0.55, 0.775, 1.0]
    assert [r["train_fraction"] for r in rows] == pytest.approx(configured, abs=0.002)
    assert all(r["metric"] == "roc_auc" for r in rows)
    assert rows[-1]["train_score_mean"] >= rows[-1]["cv_score_mean"]  # the usual gap


def test_regression_and_clustering_diagnostics(trained_template: Project) -> None:
    version = _version(trained_template, "customer_spend_next_30d")
    bins = _rows(trained_template, "model_prediction_bins", "customer_spend_next_30d")
    for split in ("train", "valid", "test"):
        mine = [b for b in bins if b["split"] == split]
        assert len(mine) == 10 and sum(b["count"] for b in mine) == version[f"rows_{split}"]
    residuals = {
        (r["split"], r["statistic"]): r["value"]
        for r in _rows(trained_template, "model_residuals", "customer_spend_next_30d")
    }
    rmse = next(
        r["value"]
        for r in _rows(trained_template, "model_metrics", "customer_spend_next_30d")
        if r["split"] == "test" and r["metric"] == "rmse"
    )
    mean, std = residuals[("test", "mean")], residuals[("test", "std")]
    assert np.sqrt(mean**2 + std**2) == pytest.approx(rmse, rel=1e-9)
    profiles = _rows(trained_template, "model_cluster_profiles", "customer_segments")
    segments = _version(trained_template, "customer_segments")
    sizes = {r["cluster"]: r["size"] for r in profiles}
    assert sum(sizes.values()) == sum(segments[f"rows_{s}"] for s in ("train", "valid", "test"))
    assert {r["feature"] for r in profiles} == set(
        json.loads(segments["feature_schema"])["numeric"]
    )


def test_permutation_importance_ranks_a_planted_feature_first(trained: Project) -> None:
    rng = np.random.default_rng(3)
    n = 1500
    signal = rng.normal(size=n)
    data = pa.table(
        {
            "id": list(range(n)),
            "noise_a": rng.normal(size=n),
            "signal": signal,
            "noise_b": rng.normal(size=n),
            "colour": rng.choice(["red", "blue"], size=n),
            "label": (signal + rng.normal(scale=0.3, size=n) > 0).tolist(),
        }
    )
    spec = parse_spec(
        "planted",
        {
            "task": "classification",
            "entity_id": "id",
            "target": "label",
            "candidates": {"logistic_regression": {"C": [1.0]}},
            "search": {"cv_folds": 3},
            "evaluation": {
                "learning_curve_sizes": [0.25, 0.5, 1.0],
                "cost": {"false_positive": 1, "false_negative": 10},
            },
        },
    )
    relation = Relation("planted", "scratch", "planted")
    model = MLModel("planted", "planted", spec, relation, relation, "planted_predictions")
    with open_warehouse(trained) as warehouse:
        warehouse.replace_table("planted", data, schema="scratch")
        registry = Registry(warehouse, trained.artifacts_dir)
        train_model(warehouse, registry, model, lambda _: None)
    importance = _rows(trained, "model_feature_importance", "planted")
    permutation = sorted(
        (r for r in importance if r["kind"] == "permutation"), key=lambda r: r["rank"]
    )
    assert permutation[0]["feature"] == "signal"
    assert permutation[0]["importance"] > 10 * max(abs(r["importance"]) for r in permutation[1:])
    coefficients = sorted(
        (r for r in importance if r["kind"] == "coefficient"), key=lambda r: r["rank"]
    )
    assert coefficients[0]["feature"] == "numeric__signal"
    assert len(_rows(trained, "model_learning_curve", "planted")) == 3
    # False negatives cost 10x: the cost-optimal threshold is far below 0.5.
    cheapest = {
        r["threshold"]
        for r in _rows(trained, "model_confusion_matrix", "planted")
        if r["threshold_kind"] == "min_cost"
    }
    assert len(cheapest) == 1 and cheapest.pop() < 0.3


def test_reports_embed_every_plot_and_work_offline(trained: Project) -> None:
    workspace = Workspace.open(trained)
    paths = report(workspace, None, progress=lambda _: None)
    assert [p.name for p in paths] == [
        "bank_term_deposit-v1.html",
        "customer_high_value-v1.html",
        "customer_segments-v1.html",
        "customer_spend_next_30d-v1.html",
    ]
    expected = {
        "bank_term_deposit": [
            "ROC curve",
            "Precision-recall curve",
            "Confusion matrix (test, default",
            "Confusion matrix (test, best_f1",
            "Calibration",
            "Learning curve",
            "Permutation importance",
            "Search results",
        ],
        "customer_spend_next_30d": [
            "Predicted versus actual",
            "Learning curve",
            "Permutation importance",
            "Search results",
        ],
        "customer_segments": ["Cluster profiles", "Search results"],
    }
    for path in paths:
        page = path.read_text()
        assert page.startswith("<!doctype html>")
        assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched
        images = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"', page)
        model = path.name.split("-v")[0]
        for title in expected.get(model, []):
            assert any(alt.startswith(title) for alt, _ in images), (model, title)
        assert all(len(data) > 2000 for _, data in images)
        assert "Model card" in page and "Metrics" in page


def test_the_report_compares_with_the_previous_champion(trained: Project) -> None:
    workspace = Workspace.open(trained)
    train(workspace, ["customer_segments"], force=True, progress=lambda _: None)
    with workspace.registry() as registry:
        registry.promote("customer_segments", 2, reason="test")
    [path] = report(workspace, ["customer_segments"], progress=lambda _: None)
    page = path.read_text()
    assert path.name == "customer_segments-v2.html"
    assert "Compared with champion v1 (kmeans)" in page


def test_dbt_sources_and_the_customer_mart(trained_template: Project) -> None:
    scores = table(trained_template, "customer_scores", schema="main")
    customers = table(trained_template, "customers", schema="main")
    assert scores.num_rows == customers.num_rows
    row = scores.to_pylist()[0]
    assert 0 <= row["high_value_probability"] <= 1
    assert row["segment"] is not None and row["predicted_spend_next_30d"] is not None


def test_docs_show_the_ml_exposures_and_sources(trained: Project) -> None:
    run_dbt(trained, ["docs", "generate"], quiet=True)
    manifest = json.loads((trained.dbt_target_dir / "manifest.json").read_text())
    exposures = {e["name"]: e for e in manifest["exposures"].values()}
    assert {e["type"] for e in exposures.values()} == {"ml"}
    assert (
        "model.warehouse_ml.customer_features"
        in exposures["customer_high_value"]["depends_on"]["nodes"]
    )
    catalog = json.loads((trained.dbt_target_dir / "catalog.json").read_text())
    assert "source.warehouse_ml.ml.model_versions" in catalog["sources"]
    assert "model.warehouse_ml.customer_scores" in catalog["nodes"]
