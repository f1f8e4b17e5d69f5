"""`ml run`, fingerprints, incremental scoring, monitoring and the retraining loop."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sklearn.metrics import roc_auc_score

from ml import drift
from ml.project import Project
from ml.spec import parse_spec
from ml.train import train_model
from ml.workflow import Workspace, history, monitor, replay, score, train
from tests.conftest import copy_dbt_project, open_warehouse, project_environment
from tests.e2e.conftest import table

pytestmark = pytest.mark.slow

ML = str(Path(sys.executable).parent / "ml")


def _versions(project: Project, model: str) -> list[dict[str, Any]]:
    return sorted(
        (r for r in table(project, "model_versions").to_pylist() if r["model_name"] == model),
        key=lambda r: r["model_version"],
    )


def _ml(
    project: Project, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **project_environment(project.duckdb_path.parent), **(env or {})}
    return subprocess.run([ML, *args], env=environment, capture_output=True, text=True, timeout=900)


def test_unchanged_inputs_reuse_the_champion_and_changes_retrain(trained: Project) -> None:
    workspace = Workspace.open(trained)
    [line] = train(workspace, ["customer_segments"], progress=lambda _: None)
    assert "unchanged" in line and "champion v1 reused" in line
    assert len(_versions(trained, "customer_segments")) == 1

    # changed data: one customer's features move
    with open_warehouse(trained) as warehouse:
        current = warehouse.table("customer_features_current", schema="main")
        first = warehouse.read_arrow(current.select("customer_id").limit(1)).column(0)[0].as_py()
        changed = current.mutate(
            recency_days=(current.customer_id == first).ifelse(
                current.recency_days + 1, current.recency_days
            )
        )
        warehouse.replace_table("customer_features_current", changed, schema="main")
    [line] = train(workspace, ["customer_segments"], progress=lambda _: None)
    assert line.startswith("customer_segments: v2")
    versions = _versions(trained, "customer_segments")
    assert json.loads(versions[1]["changes"])["data_fingerprint"]
    assert versions[0]["training_fingerprint"] != versions[1]["training_fingerprint"]

    # changed spec, and changed feature SQL: each retrains
    model = workspace.models(["customer_segments"])[0]
    with workspace.registry() as registry:
        raw = {**model.spec.model_dump(mode="json"), "seed": 7}
        reseeded = dataclasses.replace(model, spec=parse_spec(model.name, raw))
        assert train_model(registry.warehouse, registry, reseeded, lambda _: None).trained
        resql = dataclasses.replace(model, feature_sql_checksum="0" * 64)
        assert train_model(registry.warehouse, registry, resql, lambda _: None).trained
        same = train_model(registry.warehouse, registry, resql, lambda _: None)
        assert not same.trained and "same as v4" in same.message
    log = history(workspace, "customer_segments")
    assert "spec changed: seed" in log and "feature SQL changed" in log
    assert "training data changed" in log and "first version" in log


def test_incremental_scoring_adds_exactly_the_new_and_changed_entities(trained: Project) -> None:
    workspace = Workspace.open(trained)
    name = "customer_spend_next_30d"
    predictions = "customer_spend_predictions"
    before = table(trained, predictions)
    [line] = score(workspace, [name], incremental=True, progress=lambda _: None)
    assert line.startswith(f"{name}: 0 rows")
    assert table(trained, predictions).to_pylist() == before.to_pylist()

    with open_warehouse(trained) as warehouse:
        current = warehouse.table("customer_features_current", schema="main")
        ids = sorted(warehouse.read_arrow(current.select("customer_id")).column(0).to_pylist())
        changed_ids, copied_ids = ids[:5], ids[5:8]
        changed = current.mutate(
            spend_last_30d=current.customer_id.isin(changed_ids).ifelse(
                current.spend_last_30d + 10, current.spend_last_30d
            )
        )
        new_rows = current.filter(current.customer_id.isin(copied_ids)).mutate(
            customer_id=current.customer_id + "-new"
        )
        warehouse.replace_table("customer_features_current", changed.union(new_rows), schema="main")
    [line] = score(workspace, [name], incremental=True, progress=lambda _: None)
    assert line.startswith(f"{name}: 8 rows")
    after = table(trained, predictions)
    assert after.num_rows == before.num_rows + 3
    runs = {r["customer_id"]: r["scoring_run_id"] for r in after.to_pylist()}
    latest = runs[changed_ids[0]]
    rescored = sorted(k for k, v in runs.items() if v == latest)
    assert rescored == sorted([*changed_ids, *[f"{i}-new" for i in copied_ids]])
    [line] = score(workspace, [name], incremental=True, progress=lambda _: None)
    assert line.startswith(f"{name}: 0 rows")  # nothing the second time
    history_rows = table(trained, f"{predictions}_history")
    assert pc.sum(pc.equal(history_rows.column("scoring_run_id"), latest)).as_py() == 8

    # A new champion means a full re-score.
    train(workspace, [name], force=True, progress=lambda _: None)
    with workspace.registry() as registry:
        registry.promote(name, 2, reason="test")
    [line] = score(workspace, [name], incremental=True, progress=lambda _: None)
    assert line.startswith(f"{name}: {after.num_rows:,} rows")
    assert set(table(trained, predictions).column("model_version").to_pylist()) == {2}


def test_stored_psi_equals_a_numpy_computation_on_the_scored_data(trained: Project) -> None:
    workspace = Workspace.open(trained)
    [result] = monitor(workspace, ["customer_high_value"], progress=lambda _: None)
    assert result.status in {"ok", "warn", "alert"}
    stored = {
        r["variable"]: r
        for r in table(trained, "monitoring_drift").to_pylist()
        if r["model_name"] == "customer_high_value"
    }
    reference = [
        r
        for r in table(trained, "model_reference_stats").to_pylist()
        if r["model_name"] == "customer_high_value"
    ]
    current = table(trained, "customer_features_current", schema="main")
    for variable in ("recency_days", "preferred_store_name", "spend_last_90d"):
        rows = [r for r in reference if r["variable"] == variable]
        bins = drift.bins_from_rows(rows)
        values = current.column(variable)
        values = (
            values.cast(pa.float64()).to_numpy(zero_copy_only=False)
            if bins.kind == "numeric"
            else values.to_pylist()
        )
        actual = drift.fractions(bins, drift.assign(bins, values))
        expected = drift.reference_fractions(rows)
        e = np.array([max(expected[k], drift.EPSILON) for k in bins.labels()])
        a = np.array([max(actual[k], drift.EPSILON) for k in bins.labels()])
        assert stored[variable]["psi"] == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert drift.PREDICTION in stored


def test_realised_performance_equals_scikit_learn_on_the_joined_rows(trained: Project) -> None:
    workspace = Workspace.open(trained)
    model = workspace.models(["customer_high_value"])[0]
    results = replay(workspace, [model], months=2, progress=lambda _: None)
    assert len(results) == 2
    performance = [
        r
        for r in table(trained, "monitoring_performance").to_pylist()
        if r["model_name"] == "customer_high_value"
    ]
    assert len(performance) == 2
    labels = {
        (r["customer_id"], r["as_of_date"]): r["is_high_value_next_30d"]
        for r in table(trained, "customer_features", schema="main").to_pylist()
    }
    scored = table(trained, "customer_high_value_predictions_history").to_pylist()
    for row in performance:
        joined = [
            (labels[(p["customer_id"], p["as_of_date"])], p["probability_true"])
            for p in scored
            if p["scoring_run_id"] == row["scoring_run_id"]
            and (p["customer_id"], p["as_of_date"]) in labels
        ]
        y, probability = zip(*joined, strict=True)
        assert row["rows_with_outcome"] == len(joined)
        assert row["value"] == pytest.approx(roc_auc_score(y, probability))
        assert row["metric"] == "roc_auc"


def test_a_distribution_shift_raises_an_alert_and_ml_run_retrains(
    trained: Project, tmp_path: Path
) -> None:
    """Customers age, so the demo data drifts a little all the time: thresholds are raised
    above that in a copy of the dbt project, then a real shift is injected by scoring the
    snapshot of the shop's sixth week (one store, new customers) while the training data
    stays as it is."""
    root = tmp_path / "repo"
    copy_dbt_project(root)
    exposures = root / "dbt_project" / "models" / "ml" / "_ml__exposures.yml"
    text = exposures.read_text()
    assert "psi_warn: 0.1\n            psi_alert: 0.25" in text
    exposures.write_text(
        text.replace(
            "psi_warn: 0.1\n            psi_alert: 0.25",
            "psi_warn: 2.5\n            psi_alert: 4.0",
        )
    )
    env = {
        "WAREHOUSE_ML_PROJECT_DIR": str(root),
        "WAREHOUSE_ML_DBT_TARGET_DIR": str(tmp_path / "target"),
    }
    name = "customer_high_value"

    calm = _ml(trained, "run", name, env=env)
    assert calm.returncode in (0, 3), calm.stdout + calm.stderr
    assert "v2" in calm.stdout  # the spec changed (thresholds): retrained once, as it should
    shifted = '{"scoring_as_of_date": "2018-10-15"}'
    alert = _ml(trained, "run", name, "--vars", shifted, env=env)
    assert alert.returncode == 4, alert.stdout + alert.stderr
    assert "ALERT" in alert.stdout and "tenure_days PSI" in alert.stdout
    assert "unchanged (data, feature SQL, spec, seed and libraries)" in alert.stdout, alert.stdout[
        alert.stdout.find("[2/5]") :
    ]
    retrain = _ml(trained, "run", name, "--vars", shifted, env=env)
    assert "retraining: monitoring alert" in retrain.stdout, retrain.stdout + retrain.stderr
    versions = _versions(trained, name)
    assert [v["trigger"] for v in versions] == ["requested", "scheduled run", "monitoring alert"]
    # The version trained for the alert cannot beat the champion on unchanged data: the
    # next run says so instead of retraining again.
    again = _ml(trained, "run", name, "--vars", shifted, env=env)
    assert "retraining" not in again.stdout
    assert "the alert persists; v3 was trained for it" in again.stdout
    assert len(_versions(trained, name)) == 3


def test_run_selection_and_exit_codes(trained: Project) -> None:
    unknown = _ml(trained, "run", "--select", "nope_*")
    assert unknown.returncode == 2 and "no ML model matches ['nope_*']" in unknown.stderr
    excluded = _ml(trained, "run", "--select", "customer_*", "--exclude", "customer_s*")
    assert excluded.returncode in (0, 3, 4), excluded.stderr
    summary = excluded.stdout.split("ml run summary")[1]
    assert "customer_high_value:" in summary
    assert "customer_segments" not in summary and "bank_term_deposit" not in summary


def test_a_champion_older_than_max_age_days_is_retrained(trained: Project) -> None:
    name = "customer_high_value"  # its spec says max_age_days: 90
    old = _versions(trained, name)[0]["created_at"] - timedelta(days=100)
    with open_warehouse(trained) as warehouse:
        warehouse.update(
            "model_versions",
            schema="ml",
            values={"created_at": old},
            where={"model_name": name, "model_version": 1},
        )
    completed = _ml(trained, "run", name)
    assert "retraining: champion is 100 days old (max_age_days 90)" in completed.stdout, (
        completed.stdout + completed.stderr
    )
    versions = _versions(trained, name)
    assert len(versions) == 2 and versions[1]["trigger"].startswith("champion is 100 days old")
    # Age retrains once per champion (the demo data drifts, so the next run may still
    # retrain once for a monitoring alert; never again for age).
    _ml(trained, "run", name)
    again = _ml(trained, "run", name)
    assert "the champion is still too old; v2 was trained for it" in again.stdout
    triggers = [v["trigger"] for v in _versions(trained, name)]
    assert sum(t.startswith("champion is") for t in triggers) == 1, triggers
