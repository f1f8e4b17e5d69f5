"""`ml monitor`: drift of features and predictions against the training reference, and
realised performance once outcomes arrive, computed in the warehouse through Ibis.

Reference distributions are fitted at training time (`reference_table`); the binning of
the scored data is an Ibis CASE expression, so it runs on whatever engine holds the data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from ml import drift
from ml.dataset import Dataset
from ml.errors import MLError
from ml.evaluate import predict
from ml.metrics import METRICS
from ml.registry import ML_SCHEMA, Registry, now
from ml.score import SCORING_RUNS, probability_column
from ml.spec import MLModel, ModelSpec
from ml.warehouse import Warehouse

REFERENCE = "model_reference_stats"
DRIFT = "monitoring_drift"
PERFORMANCE = "monitoring_performance"
RUNS = "monitoring_runs"

STATUS_ORDER = {"ok": 0, "warn": 1, "alert": 2}

DRIFT_SCHEMA = pa.schema(
    [
        ("model_name", pa.string()),
        ("model_version", pa.int64()),
        ("scoring_run_id", pa.string()),
        ("variable", pa.string()),
        ("kind", pa.string()),
        ("psi", pa.float64()),
        ("js_distance", pa.float64()),
        ("rows", pa.int64()),
        ("status", pa.string()),
        ("monitored_at", pa.timestamp("us")),
    ]
)
PERFORMANCE_SCHEMA = pa.schema(
    [
        ("model_name", pa.string()),
        ("model_version", pa.int64()),
        ("scoring_run_id", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("training_test_value", pa.float64()),
        ("drop", pa.float64()),
        ("rows_with_outcome", pa.int64()),
        ("status", pa.string()),
        ("monitored_at", pa.timestamp("us")),
    ]
)
RUNS_SCHEMA = pa.schema(
    [
        ("model_name", pa.string()),
        ("model_version", pa.int64()),
        ("scoring_run_id", pa.string()),
        ("scored_at", pa.timestamp("us")),
        ("status", pa.string()),
        ("reasons", pa.string()),
        ("max_psi", pa.float64()),
        ("monitored_at", pa.timestamp("us")),
    ]
)


def prediction_column(task: str, classes: list[Any] | None) -> str:
    """The predictions column whose distribution is monitored."""
    if task == "clustering":
        return "cluster"
    if task == "classification" and classes is not None and len(classes) == 2:
        return probability_column(classes[-1])
    return "prediction"


def _prediction_bins(task: str, classes: list[Any] | None, values: np.ndarray) -> drift.Bins:
    if task == "classification" and classes is not None and len(classes) == 2:
        return drift.Bins(drift.PREDICTION, "numeric", tuple(np.round(np.arange(1, 10) / 10, 1)))
    if task == "regression":
        return drift.numeric_bins(drift.PREDICTION, values.astype(float))
    return drift.categorical_bins(drift.PREDICTION, [str(v) for v in values])


def reference_table(spec: ModelSpec, pipeline: Any, data: Dataset, key: dict[str, Any]) -> pa.Table:
    """Training-split distributions of every feature and of the prediction."""
    frame = data.frames["train"]
    rows: list[dict[str, Any]] = []
    for name in data.schema.numeric:
        values = frame[name].to_numpy(dtype=float)
        bins = drift.numeric_bins(name, values)
        rows += drift.reference_rows(bins, drift.assign(bins, values))
    for name in data.schema.categorical:
        values = frame[name].tolist()
        bins = drift.categorical_bins(name, values)
        rows += drift.reference_rows(bins, drift.assign(bins, values))
    predicted, proba = predict(pipeline, frame)
    classes = [
        c.item() if isinstance(c, np.generic) else c for c in getattr(pipeline, "classes_", [])
    ] or None
    values = proba[:, 1] if proba is not None and len(classes or []) == 2 else predicted
    bins = _prediction_bins(spec.task, classes, np.asarray(values))
    keys = drift.assign(bins, values if bins.kind == "numeric" else [str(v) for v in values])
    rows += drift.reference_rows(bins, keys)
    return pa.Table.from_pylist([{**key, **r} for r in rows], schema=drift.REFERENCE_SCHEMA)


def bin_expression(column: ir.Value, bins: drift.Bins) -> ir.Value:
    """The warehouse twin of :func:`ml.drift.assign`: an Ibis CASE over the bins."""
    if bins.kind == "numeric":
        value = column.cast("float64")
        cases = [(value.isnull(), drift.MISSING_BIN)]
        cases += [(value <= edge, index) for index, edge in enumerate(bins.edges)]
        return ibis.cases(*cases, else_=len(bins.edges))
    text = column.cast("string")
    return ibis.cases(
        (text.isnull(), drift.MISSING), (text.isin(list(bins.categories)), text), else_=drift.OTHER
    )


def current_fractions(
    warehouse: Warehouse, table: ir.Table, column: str, bins: drift.Bins
) -> tuple[dict[Any, float], int]:
    """Bin shares of one column, counted in the warehouse."""
    binned = table.select(key=bin_expression(table[column], bins))
    counts = warehouse.read_arrow(binned.group_by("key").agg(n=binned.count())).to_pylist()
    total = sum(r["n"] for r in counts)
    shares = {label: 0.0 for label in bins.labels()}
    for row in counts:
        shares[row["key"]] = row["n"] / total if total else 0.0
    return shares, total


@dataclass(frozen=True)
class MonitorResult:
    """The status of a model's latest scoring run, with the reasons."""

    model_name: str
    scoring_run_id: str | None
    status: str
    reasons: list[str]

    def describe(self) -> str:
        detail = "; ".join(self.reasons) if self.reasons else "no drift or performance issue"
        run = f"run {self.scoring_run_id[:8]}" if self.scoring_run_id else "no run"
        return f"{self.model_name}: {self.status.upper()} ({run}): {detail}"


def _status(value: float, warn: float, alert: float) -> str:
    if np.isnan(value):
        return "ok"
    return "alert" if value >= alert else "warn" if value >= warn else "ok"


def worst_status(statuses: Iterable[str]) -> str:
    """The most severe of ``ok`` < ``warn`` < ``alert`` (``ok`` when there is none)."""
    return max(statuses, key=STATUS_ORDER.__getitem__, default="ok")


def monitor_model(
    warehouse: Warehouse,
    registry: Registry,
    model: MLModel,
    progress: Callable[[str], None] = print,
) -> MonitorResult:
    """Compute drift for the latest scoring run and realised performance for every run
    whose outcomes have arrived; write the monitoring tables; return the status."""
    spec = model.spec
    settings = spec.monitor
    runs = _scoring_runs(warehouse, model)
    if not runs:
        raise MLError(
            f"model {model.name} has no successful scoring run to monitor",
            hint=f"score it first: ml score {model.name}",
        )
    latest = runs[-1]
    version = registry.version(model.name, latest["model_version"])
    reference = registry.evaluation(REFERENCE, model.name)
    reference = [r for r in reference if r["model_version"] == version.version]
    if not reference:
        raise MLError(
            f"model {model.name} v{version.version} has no reference statistics",
            hint=f"retrain it with this release: ml train {model.name} --force",
        )
    by_variable: dict[str, list[dict[str, Any]]] = {}
    for row in reference:
        by_variable.setdefault(row["variable"], []).append(row)
    monitored_at = now()
    drift_rows = []
    relation = warehouse.table(model.scoring.name, schema=model.scoring.schema)
    history = warehouse.table(f"{model.predictions_table}_history", schema=ML_SCHEMA)
    scored = history.filter(history.scoring_run_id == latest["scoring_run_id"])
    for variable, rows in sorted(by_variable.items()):
        bins = drift.bins_from_rows(rows)
        if variable == drift.PREDICTION:
            table, column = scored, prediction_column(spec.task, version.classes)
        elif variable in relation.columns:
            table, column = relation, variable
        else:
            continue
        current, total = current_fractions(warehouse, table, column, bins)
        expected = drift.reference_fractions(rows)
        value = drift.psi(expected, current)
        drift_rows.append(
            {
                "model_name": model.name,
                "model_version": version.version,
                "scoring_run_id": latest["scoring_run_id"],
                "variable": variable,
                "kind": bins.kind,
                "psi": value,
                "js_distance": drift.js_distance(expected, current),
                "rows": total,
                "status": _status(value, settings.psi_warn, settings.psi_alert),
                "monitored_at": monitored_at,
            }
        )
    performance_rows = _performance(warehouse, registry, model, runs, monitored_at)
    reasons = [
        f"{r['variable']} PSI {r['psi']:.3f} ({r['status']})"
        for r in drift_rows
        if r["status"] != "ok"
    ]
    latest_performance = [
        r for r in performance_rows if r["scoring_run_id"] == latest["scoring_run_id"]
    ]
    reasons += [
        f"realised {r['metric']} {r['value']:.4f} vs {r['training_test_value']:.4f} "
        f"at training ({r['status']})"
        for r in latest_performance
        if r["status"] != "ok"
    ]
    status = worst_status([r["status"] for r in drift_rows + latest_performance])
    run_row = {
        "model_name": model.name,
        "model_version": version.version,
        "scoring_run_id": latest["scoring_run_id"],
        "scored_at": latest["started_at"],
        "status": status,
        "reasons": json.dumps(reasons),
        "max_psi": max((r["psi"] for r in drift_rows), default=None),
        "monitored_at": monitored_at,
    }
    with warehouse.transaction():
        _replace_rows(
            warehouse,
            DRIFT,
            pa.Table.from_pylist(drift_rows, schema=DRIFT_SCHEMA),
            model.name,
            [latest["scoring_run_id"]],
        )
        _replace_rows(
            warehouse,
            PERFORMANCE,
            pa.Table.from_pylist(performance_rows, schema=PERFORMANCE_SCHEMA),
            model.name,
            sorted({r["scoring_run_id"] for r in performance_rows}),
        )
        _replace_rows(
            warehouse,
            RUNS,
            pa.Table.from_pylist([run_row], schema=RUNS_SCHEMA),
            model.name,
            [latest["scoring_run_id"]],
        )
    result = MonitorResult(model.name, latest["scoring_run_id"], status, reasons)
    progress(result.describe())
    return result


def _scoring_runs(warehouse: Warehouse, model: MLModel) -> list[dict[str, Any]]:
    if not warehouse.has_table(SCORING_RUNS, schema=ML_SCHEMA):
        return []
    runs = warehouse.table(SCORING_RUNS, schema=ML_SCHEMA)
    succeeded = runs.filter((runs.model_name == model.name) & (runs.status == "succeeded"))
    rows: list[dict[str, Any]] = warehouse.read_arrow(succeeded.order_by("started_at")).to_pylist()
    return rows


def _performance(
    warehouse: Warehouse,
    registry: Registry,
    model: MLModel,
    runs: list[dict[str, Any]],
    monitored_at: Any,
) -> list[dict[str, Any]]:
    """Realised metric per scoring run: its predictions joined, in the warehouse, to the
    outcomes that have arrived; the metric itself is scikit-learn's, on the joined rows."""
    spec = model.spec
    if model.outcomes is None or spec.target is None:
        return []
    outcomes = warehouse.table(
        model.outcomes.name,
        schema=model.outcomes.schema,
        hint=f"build it: ml build --select {model.outcomes.model}",
    )
    target = spec.monitor.outcomes.target if spec.monitor.outcomes else None
    target = target or spec.target
    keys = [c for c in (spec.entity_id, spec.time_column) if c is not None]
    history = warehouse.table(f"{model.predictions_table}_history", schema=ML_SCHEMA)
    known = outcomes.filter(outcomes[target].notnull()).select(*keys, ml_outcome=outcomes[target])
    metric = METRICS[spec.metric_name]
    rows = []
    for run in runs:
        scored = history.filter(history.scoring_run_id == run["scoring_run_id"])
        joined = warehouse.read_arrow(scored.inner_join(known, keys))
        if joined.num_rows == 0:
            continue  # no outcome has arrived for this run yet
        version = registry.version(model.name, run["model_version"])
        y = np.asarray(joined.column("ml_outcome").to_pylist())
        prediction = np.asarray(joined.column("prediction").to_pylist())
        classes = np.asarray(version.classes) if version.classes else None
        proba = None
        if classes is not None:
            proba = np.column_stack(
                [joined.column(probability_column(c)).to_numpy() for c in classes]
            )
        if spec.task == "regression":
            y, prediction = y.astype(float), prediction.astype(float)
        value = metric.compute(y, prediction, proba, classes)
        at_training = float(version.row["test_score"])
        # Drop: how much worse than at training, relative for error metrics (rmse, ...).
        if metric.greater_is_better:
            drop = at_training - value
        else:
            drop = (value - at_training) / at_training if at_training else value
        rows.append(
            {
                "model_name": model.name,
                "model_version": version.version,
                "scoring_run_id": run["scoring_run_id"],
                "metric": metric.name,
                "value": value,
                "training_test_value": at_training,
                "drop": drop,
                "rows_with_outcome": joined.num_rows,
                "status": _status(
                    drop, spec.monitor.performance_warn, spec.monitor.performance_alert
                ),
                "monitored_at": monitored_at,
            }
        )
    return rows


def _replace_rows(
    warehouse: Warehouse, name: str, rows: pa.Table, model_name: str, run_ids: list[str]
) -> None:
    """Replace this model's rows of the given scoring runs (monitoring is idempotent)."""
    if not warehouse.has_table(name, schema=ML_SCHEMA):
        if rows.num_rows:
            warehouse.create_table(name, rows, schema=ML_SCHEMA)
        return
    old = warehouse.table(name, schema=ML_SCHEMA)
    stale = (old.model_name == model_name) & old.scoring_run_id.isin(run_ids or [""])
    kept = warehouse.read_arrow(old.filter(~stale))
    combined = pa.concat_tables([kept, rows.select(kept.schema.names).cast(kept.schema)])
    warehouse.replace_table(name, combined, schema=ML_SCHEMA)


def _last_monitoring(warehouse: Warehouse, model_name: str) -> dict[str, Any] | None:
    if not warehouse.has_table(RUNS, schema=ML_SCHEMA):
        return None
    runs = warehouse.table(RUNS, schema=ML_SCHEMA)
    rows = warehouse.read_arrow(
        runs.filter(runs.model_name == model_name).order_by(ibis.desc("monitored_at")).limit(1)
    ).to_pylist()
    return rows[0] if rows else None


def last_status(warehouse: Warehouse, model_name: str) -> str | None:
    """The status of the model's most recent monitoring, if any."""
    row = _last_monitoring(warehouse, model_name)
    return None if row is None else str(row["status"])


def last_monitored_at(warehouse: Warehouse, model_name: str) -> Any:
    """When the model was last monitored, if ever."""
    row = _last_monitoring(warehouse, model_name)
    return None if row is None else row["monitored_at"]
