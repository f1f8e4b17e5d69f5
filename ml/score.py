"""`ml score`: stream the scoring relation through a registered model into the warehouse."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from ml.errors import MLError
from ml.frames import to_model_frame
from ml.registry import ML_SCHEMA, ModelVersion, Registry, now
from ml.spec import MLModel
from ml.warehouse import StagedTable, Warehouse

SCORING_RUNS = "scoring_runs"
SCORING_RUNS_SCHEMA = pa.schema(
    [
        ("scoring_run_id", pa.string()),
        ("model_name", pa.string()),
        ("model_version", pa.int64()),
        ("scoring_relation", pa.string()),
        ("predictions_table", pa.string()),
        ("mode", pa.string()),
        ("rows_scored", pa.int64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("started_at", pa.timestamp("us")),
        ("finished_at", pa.timestamp("us")),
        ("duration_seconds", pa.float64()),
    ]
)


@dataclass(frozen=True)
class ScoringRun:
    """The ledger row of one scoring run."""

    scoring_run_id: str
    model_version: int
    rows: int
    predictions_table: str
    seconds: float


def probability_column(label: Any) -> str:
    """``probability_<class>``: a readable column name for one class's probability."""
    text = str(label).lower()
    safe = "".join(ch if ch.isalnum() else "_" for ch in text).strip("_") or "class"
    return f"probability_{safe}"


def check_scoring_schema(model: MLModel, version: ModelVersion, schema: pa.Schema) -> None:
    """Every training feature must be present with the training type."""
    features = version.feature_schema
    problems = []
    for column in [model.spec.entity_id, *features.columns]:
        if column not in schema.names:
            problems.append(f"needs column {column}, missing from {model.scoring}")
    for column, expected in features.arrow_types.items():
        if column in schema.names and str(schema.field(column).type) != expected:
            problems.append(
                f"column {column} is {schema.field(column).type} in {model.scoring}, "
                f"but the model was trained on {expected}"
            )
    if problems:
        raise MLError(
            f"score: {model.predictions_table} (model {model.name} v{version.version}) "
            + "; ".join(problems),
            hint=f"run: ml build --select +{model.scoring.model} "
            f"(or retrain on the new columns: ml train {model.name})",
        )


def _prediction_batches(
    reader: pa.RecordBatchReader,
    pipeline: Any,
    model: MLModel,
    version: ModelVersion,
    run_id: str,
    scored_at: Any,
    progress: Callable[[str], None],
) -> Iterator[pa.RecordBatch]:
    features = version.feature_schema
    classes = version.classes
    keys = [c for c in (model.spec.entity_id, model.spec.time_column) if c is not None]
    total = 0
    for batch in reader:
        if batch.num_rows == 0:
            continue
        frame = to_model_frame(batch, features)
        prediction = pipeline.predict(frame)
        columns: dict[str, pa.Array] = {
            key: batch.column(key) for key in keys if key in batch.schema.names
        }
        if model.spec.task == "regression":
            columns["prediction"] = pa.array(np.asarray(prediction, dtype=float))
        elif model.spec.task == "clustering":
            columns["cluster"] = pa.array(np.asarray(prediction, dtype=np.int64))
        else:
            columns["prediction"] = pa.array(list(np.asarray(prediction).tolist()))
            proba = pipeline.predict_proba(frame)
            for index, label in enumerate(classes or []):
                columns[probability_column(label)] = pa.array(proba[:, index])
        n = batch.num_rows
        columns["features_hash"] = batch.column("features_hash")
        columns["model_name"] = pa.array([model.name] * n, pa.string())
        columns["model_version"] = pa.array([version.version] * n, pa.int64())
        columns["scoring_run_id"] = pa.array([run_id] * n, pa.string())
        columns["scored_at"] = pa.array([scored_at] * n, pa.timestamp("us"))
        total += n
        progress(f"  scored {total:,} rows")
        yield pa.RecordBatch.from_pydict(columns)


def features_hash(table: ir.Table, columns: list[str]) -> ir.StringValue:
    """md5 of a row's feature values, computed in the warehouse: equal hashes mean the
    features did not change (NULL and the empty string are told apart)."""
    parts = [table[c].cast("string").fill_null("\u2400") for c in columns]
    digest: ir.StringValue = ibis.literal("\u241f").join(parts).hexdigest("md5")
    return digest


def score_model(
    warehouse: Warehouse,
    registry: Registry,
    model: MLModel,
    *,
    version: int | None = None,
    incremental: bool = False,
    progress: Callable[[str], None] = print,
) -> ScoringRun:
    """Score ``model.scoring`` with the champion (or ``version``) into ``ml.<predictions>``.

    A full run replaces the predictions table; an incremental run scores only entities
    that are new or whose features changed since the table was written by the same model
    version (a different version means a full re-score). Either way the write, the
    history rows and the ledger update commit together, so a failed run leaves the
    previous predictions as they were; every run, failed ones included, is in
    ``ml.scoring_runs``.
    """
    chosen = registry.version(model.name, version) if version else registry.champion(model.name)
    if chosen is None:
        raise MLError(
            f"model {model.name} has no champion to score with",
            hint=f"train it first: ml train {model.name}",
        )
    pipeline = registry.load_pipeline(chosen)
    relation = warehouse.table(
        model.scoring.name,
        schema=model.scoring.schema,
        hint=f"build it first: ml build --select +{model.scoring.model}",
    )
    check_scoring_schema(model, chosen, relation.schema().to_pyarrow())
    if warehouse.count(relation) == 0:
        raise MLError(
            f"score: {model.scoring} has no rows to score",
            hint=f"run: ml build --select +{model.scoring.model}",
        )
    keys = [
        c
        for c in (model.spec.entity_id, model.spec.time_column)
        if c is not None and c in relation.columns
    ]
    features = chosen.feature_schema.columns
    columns = list(dict.fromkeys([*keys, *features]))
    candidates = relation.select(*columns, features_hash=features_hash(relation, features))
    mode = "full"
    if incremental:
        mode, candidates = _incremental_rows(warehouse, model, chosen, candidates, keys, progress)
    run_id = str(uuid.uuid4())
    started_at = now()
    started = time.perf_counter()
    progress(
        f"{model.name}: scoring {model.scoring} ({mode}) with v{chosen.version} "
        f"into {ML_SCHEMA}.{model.predictions_table}"
    )
    # The run is in the ledger before any work, so even a killed run leaves a trace
    # ("running", turned into "failed" by the next writer's recovery).
    _record(
        warehouse,
        {
            "scoring_run_id": run_id,
            "model_name": model.name,
            "model_version": chosen.version,
            "scoring_relation": str(model.scoring),
            "predictions_table": f"{ML_SCHEMA}.{model.predictions_table}",
            "mode": mode,
            "rows_scored": 0,
            "status": "running",
            "error": None,
            "started_at": started_at,
            "finished_at": None,
            "duration_seconds": None,
        },
    )
    try:
        reader = warehouse.stream(candidates, batch_size=model.spec.score.batch_size)
        batches = _prediction_batches(reader, pipeline, model, chosen, run_id, started_at, progress)
        # Staged batch by batch (bounded memory, invisible to readers), then published
        # together with the history rows and the ledger update in one short transaction.
        staged = warehouse.stage(model.predictions_table, batches, schema=ML_SCHEMA)
        try:
            with warehouse.transaction():
                rows = _publish(warehouse, model, staged, mode=mode, keys=keys, run_id=run_id)
                _finish(warehouse, run_id, started, status="succeeded", rows=rows)
        finally:
            if staged is not None:
                warehouse.drop_staged(staged)
    except BaseException as error:
        _finish(warehouse, run_id, started, status="failed", error=str(error) or repr(error))
        raise
    return ScoringRun(
        run_id,
        chosen.version,
        rows,
        f"{ML_SCHEMA}.{model.predictions_table}",
        time.perf_counter() - started,
    )


def _incremental_rows(
    warehouse: Warehouse,
    model: MLModel,
    version: ModelVersion,
    candidates: ir.Table,
    keys: list[str],
    progress: Callable[[str], None],
) -> tuple[str, ir.Table]:
    """The rows an incremental run must score, and the mode it runs in."""
    table = model.predictions_table
    if not warehouse.has_table(table, schema=ML_SCHEMA):
        progress(f"{model.name}: no predictions yet; scoring everything")
        return "full", candidates
    previous = warehouse.table(table, schema=ML_SCHEMA)
    versions = warehouse.read_arrow(previous.select("model_version").distinct())
    if versions.column("model_version").to_pylist() != [version.version]:
        progress(f"{model.name}: the predictions come from another version; full re-score")
        return "full", candidates
    known = previous.select(*keys, "features_hash")
    return "incremental", candidates.anti_join(known, [*keys, "features_hash"])


def _publish(
    warehouse: Warehouse,
    model: MLModel,
    staged: StagedTable | None,
    *,
    mode: str,
    keys: list[str],
    run_id: str,
) -> int:
    """Make the staged rows the predictions (inside the caller's transaction) and add them
    to the history; return how many rows were scored.

    A full run replaces the table; an incremental run's rows replace those of the same
    entities and leave the others as they were.
    """
    if staged is None:
        return 0  # incremental, nothing new or changed: the table stays as it is
    table = model.predictions_table
    if mode == "full":
        warehouse.swap_in(staged, table)
    else:
        new = warehouse.table(staged.name, schema=ML_SCHEMA)
        old = warehouse.table(table, schema=ML_SCHEMA)
        kept = old.anti_join(new.select(*keys), keys).select(*new.columns)
        warehouse.replace_table(table, kept.union(new), schema=ML_SCHEMA)
    predictions = warehouse.table(table, schema=ML_SCHEMA)
    warehouse.append(
        f"{table}_history",
        predictions.filter(predictions.scoring_run_id == run_id),
        schema=ML_SCHEMA,
    )
    return staged.rows


def _record(warehouse: Warehouse, row: dict[str, Any]) -> None:
    warehouse.append(
        SCORING_RUNS, pa.Table.from_pylist([row], schema=SCORING_RUNS_SCHEMA), schema=ML_SCHEMA
    )


def _finish(
    warehouse: Warehouse,
    run_id: str,
    started: float,
    *,
    status: str,
    rows: int = 0,
    error: str | None = None,
) -> None:
    warehouse.update(
        SCORING_RUNS,
        schema=ML_SCHEMA,
        values={
            "status": status,
            "rows_scored": rows,
            "error": error,
            "finished_at": now(),
            "duration_seconds": time.perf_counter() - started,
        },
        where={"scoring_run_id": run_id},
    )


def recover_interrupted_runs(warehouse: Warehouse) -> list[str]:
    """Mark runs left ``running`` by a killed process as failed; drop what they staged.

    Only called by a process holding the warehouse's write lock, so no other run can be
    in progress.
    """
    notes = [
        f"dropped {name}, staged by a scoring run that never finished"
        for name in warehouse.drop_stale_staging(schema=ML_SCHEMA)
    ]
    if not warehouse.has_table(SCORING_RUNS, schema=ML_SCHEMA):
        return notes
    runs = warehouse.table(SCORING_RUNS, schema=ML_SCHEMA)
    stale = warehouse.read_arrow(
        runs.filter(runs.status == "running").select("scoring_run_id", "model_name")
    ).to_pylist()
    for row in stale:
        warehouse.update(
            SCORING_RUNS,
            schema=ML_SCHEMA,
            values={"status": "failed", "error": "interrupted: the process ended mid-run"},
            where={"scoring_run_id": row["scoring_run_id"]},
        )
    return notes + [
        f"scoring run {row['scoring_run_id'][:8]} of {row['model_name']} was interrupted; "
        "marked failed (its predictions were never committed)"
        for row in stale
    ]
