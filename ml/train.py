"""`ml train`: read features, split, search, select, evaluate, register."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ml import split as splitting
from ml.dataset import Dataset
from ml.demo_data import table_fingerprint
from ml.diagnostics import evaluation_tables
from ml.errors import MLError
from ml.evaluate import cluster_sizes, evaluate, fit_baseline, score_with
from ml.frames import (
    FeatureSchema,
    column_kind,
    infer_feature_schema,
    target_array,
    to_model_frame,
)
from ml.metrics import METRICS
from ml.monitor import REFERENCE, reference_table
from ml.registry import ModelVersion, Registry, library_versions
from ml.search import CandidateResult, search_candidate, search_clusters, select_best
from ml.spec import MLModel
from ml.warehouse import Warehouse

MAX_CLASSES = 50


@dataclass
class TrainingOutcome:
    """What training produced, before it is registered."""

    chosen: CandidateResult
    candidates: list[CandidateResult]
    metrics: dict[str, dict[str, float]]
    baseline: dict[str, dict[str, float]]


def feature_columns(model: MLModel, schema: pa.Schema) -> list[str]:
    """The spec's features, or every column but the id, target, time column and excludes."""
    spec = model.spec
    where = f"model {model.name}: relation {model.training}"
    available = list(schema.names)
    for key, column in (
        ("entity_id", spec.entity_id),
        ("target", spec.target),
        ("time_column", spec.time_column),
    ):
        if column is not None and column not in available:
            raise MLError(
                f"{where} has no column {column} (ml.{key}); columns: {available}",
                hint=f"fix ml.{key}, or add the column to the model and run: "
                f"ml build --select +{model.training.model}",
            )
    reserved = {spec.entity_id, spec.target, spec.time_column, splitting.SPLIT_COLUMN}
    if spec.features is not None:
        missing = [c for c in spec.features if c not in available]
        if missing:
            raise MLError(
                f"{where} has no feature column(s) {missing} (ml.features)",
                hint="fix ml.features, or add the columns in dbt",
            )
        clash = sorted(set(spec.features) & reserved - {None})
        if clash:
            raise MLError(
                f"{where}: ml.features lists {clash}, which are the id, target or time "
                "column; a feature cannot be one of them"
            )
        columns = list(spec.features)
    else:
        unknown = [c for c in spec.exclude if c not in available]
        if unknown:
            raise MLError(f"{where} has no column(s) {unknown} (ml.exclude)")
        columns = [c for c in available if c not in reserved and c not in spec.exclude]
    if not columns:
        raise MLError(f"{where}: no feature columns are left", hint="list them in ml.features")
    return columns


def check_target(model: MLModel, table: pa.Table) -> None:
    """Refuse a target with NULLs, one class, or a type that does not fit the task."""
    spec = model.spec
    if spec.target is None:
        return
    where = f"model {model.name}: target {spec.target} in {model.training}"
    column = table.column(spec.target)
    nulls = column.null_count
    if nulls:
        raise MLError(
            f"{where} has {nulls:,} NULL value(s) of {table.num_rows:,}",
            hint="filter unlabelled rows out of the feature model in dbt",
        )
    kind = column_kind(column.type)
    if spec.task == "regression":
        if kind != "numeric" or pa.types.is_boolean(column.type):
            raise MLError(
                f"{where} has type {column.type}; regression needs a number",
                hint="use task: classification for labels, or cast the target",
            )
    else:
        if pa.types.is_floating(column.type) or pa.types.is_decimal(column.type):
            distinct = len(pc.unique(column))
            if distinct > MAX_CLASSES:
                raise MLError(
                    f"{where} is a {column.type} with {distinct} distinct values; "
                    "classification needs labels",
                    hint="use task: regression for a continuous target",
                )
        classes = len(pc.unique(column))
        if classes < 2:
            raise MLError(
                f"{where} has a single class; there is nothing to learn",
                hint="check the label's definition in dbt",
            )
        if classes > MAX_CLASSES:
            raise MLError(f"{where} has {classes} classes (limit {MAX_CLASSES})")
        if classes != 2 and spec.evaluation.cost is not None:
            raise MLError(
                f"model {model.name}: ml.evaluation.cost applies to binary classification, "
                f"but target {spec.target} has {classes} classes",
                hint="remove evaluation.cost from the spec",
            )


def read_dataset(warehouse: Warehouse, model: MLModel) -> tuple[pa.Table, Dataset]:
    """Read the training relation with its split column, checked and typed."""
    spec = model.spec
    relation = warehouse.table(
        model.training.name,
        schema=model.training.schema,
        hint=f"build it first: ml build --select +{model.training.model}",
    )
    arrow_schema = relation.schema().to_pyarrow()
    columns = feature_columns(model, arrow_schema)
    if spec.split.method == "time":
        assert spec.time_column is not None
        counts = warehouse.read_arrow(
            relation.group_by(spec.time_column).agg(n=relation.count())
        ).to_pylist()
        boundaries = splitting.time_boundaries(
            [(row[spec.time_column], row["n"]) for row in counts], spec.split
        )
        split_table = splitting.with_time_split(
            relation, time_column=spec.time_column, boundaries=boundaries
        )
    else:
        split_table = splitting.with_hash_split(
            relation, entity_id=spec.entity_id, split=spec.split, seed=spec.seed
        )
    keep = [
        c
        for c in dict.fromkeys([spec.entity_id, spec.time_column, spec.target, *columns])
        if c is not None
    ]
    order = [c for c in (spec.entity_id, spec.time_column) if c is not None]
    table = warehouse.read_arrow(split_table.select(*keep, splitting.SPLIT_COLUMN).order_by(*order))
    where = f"model {model.name}: relation {model.training}"
    if table.num_rows == 0:
        raise MLError(f"{where} is empty", hint=f"run: ml build --select +{model.training.model}")
    check_target(model, table)
    schema = infer_feature_schema(table.schema, columns, where=where)
    _check_usable_features(table, schema, where)
    frames: dict[str, pd.DataFrame] = {}
    targets: dict[str, np.ndarray | None] = {}
    for name in splitting.SPLITS:
        part = table.filter(pc.equal(table.column(splitting.SPLIT_COLUMN), name))
        if part.num_rows == 0:
            raise MLError(
                f"{where}: the {name} split is empty ({table.num_rows} rows in all)",
                hint="add rows, or change ml.split",
            )
        frames[name] = to_model_frame(part, schema)
        targets[name] = None if spec.target is None else target_array(part, spec.target, spec.task)
        if name == "train":
            groups = np.asarray(part.column(spec.entity_id).to_pylist())
    fingerprint = table_fingerprint(table.drop_columns([splitting.SPLIT_COLUMN]))
    return table, Dataset(schema, frames, targets, groups, fingerprint)


def _check_usable_features(table: pa.Table, schema: FeatureSchema, where: str) -> None:
    useless = []
    for name in schema.columns:
        column = table.column(name)
        if column.null_count == table.num_rows:
            useless.append(f"{name} (all NULL)")
        elif len(pc.unique(column.drop_null())) == 1 and column.null_count == 0:
            useless.append(f"{name} (constant)")
    for name in schema.categorical:
        _check_not_dirty_numbers(table.column(name), name, where)
    if useless:
        raise MLError(
            f"{where}: feature column(s) carry no information: {useless}",
            hint="fix them in dbt, or add them to the spec's exclude list",
        )


def _check_not_dirty_numbers(column: pa.ChunkedArray, name: str, where: str) -> None:
    """Refuse a text column that is mostly numbers: a numeric column with stray text.

    All-numeric text (a zip code, say) stays categorical; mostly-numeric text with a few
    words is a number column that needs cleaning in dbt, not a category per value.
    """
    values = pc.unique(column.drop_null()).to_pylist()
    numeric = [v for v in values if _is_number(v)]
    if values and len(numeric) < len(values) and len(numeric) >= 0.8 * len(values):
        text = sorted(v for v in values if not _is_number(v))[:5]
        raise MLError(
            f"{where}: feature column {name} is text holding numbers mixed with text "
            f"{text}; a model would treat every number as a category",
            hint=f"clean and cast {name} to a number in dbt (e.g. try_cast / nullif), "
            "or add it to the spec's exclude list",
        )


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def fit_and_select(
    model: MLModel, data: Dataset, progress: Callable[[str], None]
) -> TrainingOutcome:
    """Search every candidate, choose on valid, evaluate the choice once on test."""
    spec = model.spec
    candidates: list[CandidateResult] = []
    for algorithm in spec.candidates:
        if spec.task == "clustering":
            candidates.append(
                search_clusters(
                    spec,
                    algorithm,
                    data.schema,
                    data.frames["train"],
                    data.frames["valid"],
                    progress,
                )
            )
        else:
            y_train = data.targets["train"]
            y_valid = data.targets["valid"]
            assert y_train is not None and y_valid is not None
            candidates.append(
                search_candidate(
                    spec,
                    algorithm,
                    data.schema,
                    (data.frames["train"], y_train, data.groups),
                    (data.frames["valid"], y_valid),
                    progress,
                )
            )
    chosen = select_best(spec, candidates)
    metrics = {
        name: evaluate(spec.task, chosen.pipeline, data.frames[name], data.targets[name])
        for name in splitting.SPLITS
    }
    baseline: dict[str, dict[str, float]] = {}
    if spec.task == "clustering":
        labels = chosen.pipeline.predict(data.frames["test"])
        metrics["test"].update(cluster_sizes(labels))
    else:
        y_train = data.targets["train"]
        assert y_train is not None
        dummy = fit_baseline(spec.task, data.frames["train"], y_train)
        baseline = {
            name: evaluate(spec.task, dummy, data.frames[name], data.targets[name])
            for name in splitting.SPLITS
        }
    return TrainingOutcome(chosen, candidates, metrics, baseline)


def _metric_rows(model: MLModel, version: int, outcome: TrainingOutcome) -> list[dict[str, Any]]:
    rows = []
    for split_name, values in outcome.metrics.items():
        for metric, value in values.items():
            rows.append(
                {
                    "model_name": model.name,
                    "model_version": version,
                    "split": split_name,
                    "metric": metric,
                    "value": value,
                    "baseline_value": outcome.baseline.get(split_name, {}).get(metric),
                }
            )
    return rows


def _trial_rows(model: MLModel, version: int, outcome: TrainingOutcome) -> list[dict[str, Any]]:
    rows = []
    for candidate in outcome.candidates:
        for index, trial in enumerate(candidate.trials):
            is_best = trial.params == candidate.params
            rows.append(
                {
                    "model_name": model.name,
                    "model_version": version,
                    "algorithm": trial.algorithm,
                    "trial": index,
                    "params": json.dumps(trial.params, sort_keys=True),
                    "metric": model.spec.metric_name,
                    "mean_cv_score": trial.mean_score,
                    "std_cv_score": trial.std_score,
                    "fold_scores": trial.fold_scores,
                    "is_candidate_best": is_best,
                    "is_selected": is_best and candidate is outcome.chosen,
                }
            )
    return rows


def _champion_decision(
    registry: Registry,
    model: MLModel,
    data: Dataset,
    outcome: TrainingOutcome,
) -> tuple[str | None, str]:
    """Compare with the champion on this version's test rows: (champion reason, message)."""
    spec = model.spec
    current = registry.champion(model.name)
    new_score = outcome.metrics["test"][spec.metric_name]
    if current is None:
        return "first version", "first version: champion"
    try:
        pipeline = registry.load_pipeline(current)
        champion_score = score_with(
            spec.metric_name,
            spec.task,
            pipeline,
            data.frames["test"][current.feature_schema.columns],
            data.targets["test"],
        )
    except (MLError, KeyError, ValueError) as error:
        reason = f"champion v{current.version} cannot be evaluated on the new test rows ({error})"
        return reason, f"replaces champion v{current.version}: {reason}"
    metric = METRICS[spec.metric_name]
    comparison = (
        f"test {metric.name} {new_score:.4f} vs champion v{current.version} {champion_score:.4f}"
    )
    if metric.better(new_score, champion_score):
        return f"beat v{current.version}: {comparison}", f"champion ({comparison})"
    return None, f"challenger ({comparison})"


@dataclass(frozen=True)
class TrainingResult:
    """What `train_model` did: the version now in force, a status line, and whether a new
    version was trained (False when the champion was reused)."""

    version: ModelVersion
    message: str
    trained: bool


def training_fingerprint(model: MLModel, data_fingerprint: str) -> str:
    """sha256 of everything a trained model depends on: the training rows, the SQL that
    built them, the spec (seed included) and the library versions."""
    parts = {
        "data": data_fingerprint,
        "feature_sql": model.feature_sql_checksum,
        "spec": model.spec_hash,
        "seed": model.spec.seed,
        "libraries": library_versions(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def describe_changes(
    previous: ModelVersion | None,
    previous_metrics: dict[str, float],
    row: dict[str, Any],
    metrics: dict[str, float],
) -> dict[str, Any]:
    """What changed against the previous version: params, spec, data, metric deltas."""
    if previous is None:
        return {"first_version": True}
    old = previous.row
    changes: dict[str, Any] = {"previous_version": previous.version}
    for field in ("algorithm", "params"):
        if old[field] != row[field]:
            changes[field] = {"from": old[field], "to": row[field]}
    if old["spec_hash"] != row["spec_hash"]:
        before, after = json.loads(old["spec"]), json.loads(row["spec"])
        changes["spec_keys"] = sorted(
            k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
        )
    for field in ("data_fingerprint", "feature_sql_checksum"):
        if old.get(field) != row[field]:
            changes[field] = {"from": (old.get(field) or "")[:12], "to": row[field][:12]}
    if old.get("library_versions") != row["library_versions"]:
        changes["library_versions"] = True
    changes["test_metric_deltas"] = {
        name: value - old_value
        for name, value in metrics.items()
        if (old_value := previous_metrics.get(name)) is not None
    }
    return changes


def train_model(
    warehouse: Warehouse,
    registry: Registry,
    model: MLModel,
    progress: Callable[[str], None] = print,
    *,
    force: bool = False,
    trigger: str = "requested",
) -> TrainingResult:
    """Train, evaluate and register one model, unless nothing changed since its champion.

    Parameters
    ----------
    force
        Train even when the training fingerprint equals the champion's.
    trigger
        Why training was asked for; recorded with the version.
    """
    started = time.perf_counter()
    spec = model.spec
    progress(f"{model.name}: reading {model.training}")
    table, data = read_dataset(warehouse, model)
    fingerprint = training_fingerprint(model, data.fingerprint)
    champion = registry.champion(model.name)
    versions = registry.versions(model.name)
    same = [v for v in versions if v.row.get("training_fingerprint") == fingerprint]
    if not force and champion is not None and same:
        # An identical run would give an identical model: keep what is there.
        if same[-1].version == champion.version:
            message = f"champion v{champion.version} reused"
        else:
            message = (
                f"same as v{same[-1].version} (a challenger); champion v{champion.version} kept"
            )
        message = (
            f"unchanged (data, feature SQL, spec, seed and libraries): {message}; "
            "retrain with --force"
        )
        return TrainingResult(champion, message, trained=False)
    sizes = {name: len(frame) for name, frame in data.frames.items()}
    progress(
        f"{model.name}: {table.num_rows:,} rows, {len(data.schema.columns)} features, "
        f"split ({spec.split.method}) train {sizes['train']:,} / valid {sizes['valid']:,} / "
        f"test {sizes['test']:,}; searching {len(spec.candidates)} candidate(s)"
    )
    outcome = fit_and_select(model, data, progress)
    chosen = outcome.chosen
    reason, status_message = _champion_decision(registry, model, data, outcome)
    version = registry.next_version(model.name)
    key = {"model_name": model.name, "model_version": version}
    evaluation = evaluation_tables(spec, chosen.pipeline, data, key=key, progress=progress)
    evaluation[REFERENCE] = reference_table(spec, chosen.pipeline, data, key)
    test = outcome.metrics["test"]
    classes = getattr(chosen.pipeline, "classes_", None)
    row = {
        "model_name": model.name,
        "model_version": version,
        "task": spec.task,
        "algorithm": chosen.algorithm,
        "params": json.dumps(chosen.params, sort_keys=True),
        "metric": spec.metric_name,
        "cv_score": chosen.cv_score,
        "valid_score": chosen.valid_score,
        "test_score": test[spec.metric_name],
        "baseline_test_score": outcome.baseline.get("test", {}).get(spec.metric_name),
        "spec_hash": model.spec_hash,
        "spec": json.dumps(spec.model_dump(mode="json")),
        "training_relation": str(model.training),
        "data_fingerprint": data.fingerprint,
        "feature_schema": json.dumps(data.schema.to_dict()),
        "classes": json.dumps(None if classes is None else [_plain(c) for c in classes]),
        "rows_train": sizes["train"],
        "rows_valid": sizes["valid"],
        "rows_test": sizes["test"],
        "seed": spec.seed,
        "library_versions": json.dumps(library_versions()),
        "training_seconds": time.perf_counter() - started,
        "training_fingerprint": fingerprint,
        "feature_sql_checksum": model.feature_sql_checksum,
        "trigger": trigger,
    }
    previous = versions[-1] if versions else None
    previous_metrics = (
        {} if previous is None else registry.test_metrics(model.name, previous.version)
    )
    row["changes"] = json.dumps(
        describe_changes(previous, previous_metrics, row, test), sort_keys=True
    )
    registered = registry.register(
        row,
        chosen.pipeline,
        metrics=_metric_rows(model, version, outcome),
        trials=_trial_rows(model, version, outcome),
        evaluation=evaluation,
        champion_reason=reason,
    )
    return TrainingResult(registered, f"v{version} {status_message}", trained=True)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
