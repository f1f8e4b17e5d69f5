"""The model registry: versions, metrics, search trials and champion history, kept in
warehouse tables of the ``ml`` schema, with artefacts on disk."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa

from ml import artifacts
from ml.errors import MLError
from ml.frames import FeatureSchema
from ml.warehouse import Warehouse

ML_SCHEMA = "ml"
VERSIONS = "model_versions"
METRICS = "model_metrics"
TRIALS = "model_search_trials"
CHAMPIONS = "model_champions"

VERSIONS_SCHEMA = pa.schema(
    [
        ("model_name", pa.string()),
        ("model_version", pa.int64()),
        ("task", pa.string()),
        ("algorithm", pa.string()),
        ("params", pa.string()),
        ("metric", pa.string()),
        ("cv_score", pa.float64()),
        ("valid_score", pa.float64()),
        ("test_score", pa.float64()),
        ("baseline_test_score", pa.float64()),
        ("spec_hash", pa.string()),
        ("spec", pa.string()),
        ("training_relation", pa.string()),
        ("data_fingerprint", pa.string()),
        ("feature_schema", pa.string()),
        ("classes", pa.string()),
        ("rows_train", pa.int64()),
        ("rows_valid", pa.int64()),
        ("rows_test", pa.int64()),
        ("seed", pa.int64()),
        ("library_versions", pa.string()),
        ("artifact_path", pa.string()),
        ("artifact_sha256", pa.string()),
        ("training_seconds", pa.float64()),
        ("training_fingerprint", pa.string()),
        ("feature_sql_checksum", pa.string()),
        ("trigger", pa.string()),
        ("changes", pa.string()),
        ("created_at", pa.timestamp("us")),
    ]
)
METRICS_SCHEMA = pa.schema(
    [
        ("model_name", pa.string()),
        ("model_version", pa.int64()),
        ("split", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("baseline_value", pa.float64()),
    ]
)
TRIALS_SCHEMA = pa.schema(
    [
        ("model_name", pa.string()),
        ("model_version", pa.int64()),
        ("algorithm", pa.string()),
        ("trial", pa.int64()),
        ("params", pa.string()),
        ("metric", pa.string()),
        ("mean_cv_score", pa.float64()),
        ("std_cv_score", pa.float64()),
        ("fold_scores", pa.list_(pa.float64())),
        ("is_candidate_best", pa.bool_()),
        ("is_selected", pa.bool_()),
    ]
)
CHAMPIONS_SCHEMA = pa.schema(
    [
        ("model_name", pa.string()),
        ("model_version", pa.int64()),
        ("promoted_at", pa.timestamp("us")),
        ("reason", pa.string()),
    ]
)

_LIBRARIES = (
    "warehouse-ml",
    "scikit-learn",
    "numpy",
    "skops",
    "pyarrow",
    "ibis-framework",
    "duckdb",
    "dbt-core",
)


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a model's behaviour depends on."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def now() -> datetime:
    """UTC now, naive (warehouse timestamps are UTC without a zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version (a row of ``ml.model_versions``)."""

    row: dict[str, Any]

    @property
    def model_name(self) -> str:
        return str(self.row["model_name"])

    @property
    def version(self) -> int:
        return int(self.row["model_version"])

    @property
    def algorithm(self) -> str:
        return str(self.row["algorithm"])

    @property
    def feature_schema(self) -> FeatureSchema:
        return FeatureSchema.from_dict(json.loads(self.row["feature_schema"]))

    @property
    def classes(self) -> list[Any] | None:
        value: list[Any] | None = json.loads(self.row["classes"])
        return value

    @property
    def params(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.row["params"])
        return value


class Registry:
    """Reads and writes the registry tables; the only writer of model artefacts."""

    def __init__(self, warehouse: Warehouse, artifacts_dir: Path) -> None:
        self.warehouse = warehouse
        self.artifacts_dir = artifacts_dir

    # reads -----------------------------------------------------------------------------

    def _rows(self, table_name: str, model_name: str) -> list[dict[str, Any]]:
        if not self.warehouse.has_table(table_name, schema=ML_SCHEMA):
            return []
        table = self.warehouse.table(table_name, schema=ML_SCHEMA)
        rows: list[dict[str, Any]] = self.warehouse.read_arrow(
            table.filter(table.model_name == model_name)
        ).to_pylist()
        return rows

    def versions(self, model_name: str) -> list[ModelVersion]:
        rows = self._rows(VERSIONS, model_name)
        return [ModelVersion(r) for r in sorted(rows, key=lambda r: r["model_version"])]

    def version(self, model_name: str, version: int) -> ModelVersion:
        for candidate in self.versions(model_name):
            if candidate.version == version:
                return candidate
        known = [v.version for v in self.versions(model_name)]
        raise MLError(
            f"model {model_name} has no version {version}; registered versions: {known or 'none'}",
            hint=f"list them with: ml models {model_name}",
        )

    def champion_history(self, model_name: str) -> list[dict[str, Any]]:
        rows = self._rows(CHAMPIONS, model_name)
        return sorted(rows, key=lambda r: (r["promoted_at"], r["model_version"]))

    def champion(self, model_name: str) -> ModelVersion | None:
        history = self.champion_history(model_name)
        return self.version(model_name, history[-1]["model_version"]) if history else None

    def status(self, model_name: str) -> dict[int, str]:
        """champion, archived (a former champion) or challenger, per version."""
        history = self.champion_history(model_name)
        current = history[-1]["model_version"] if history else None
        former = {row["model_version"] for row in history}
        return {
            v.version: "champion"
            if v.version == current
            else "archived"
            if v.version in former
            else "challenger"
            for v in self.versions(model_name)
        }

    def evaluation(self, table_name: str, model_name: str) -> list[dict[str, Any]]:
        """Rows of one registry or evaluation table for a model (all versions)."""
        return self._rows(table_name, model_name)

    def metrics(self, model_name: str, version: int) -> list[dict[str, Any]]:
        return [r for r in self._rows(METRICS, model_name) if r["model_version"] == version]

    def test_metrics(self, model_name: str, version: int) -> dict[str, float]:
        """Every metric of a version on its test split, by name."""
        return {
            m["metric"]: m["value"]
            for m in self.metrics(model_name, version)
            if m["split"] == "test"
        }

    def model_names(self) -> list[str]:
        if not self.warehouse.has_table(VERSIONS, schema=ML_SCHEMA):
            return []
        table = self.warehouse.table(VERSIONS, schema=ML_SCHEMA)
        names = self.warehouse.read_arrow(table.select("model_name").distinct())
        return sorted(names.column("model_name").to_pylist())

    def load_pipeline(self, version: ModelVersion) -> Any:
        """The fitted pipeline of a version, verified against its registered sha256."""
        path = self.artifacts_dir / str(version.row["artifact_path"])
        return artifacts.load(path, expected_sha256=str(version.row["artifact_sha256"]))

    # writes ----------------------------------------------------------------------------

    def next_version(self, model_name: str) -> int:
        versions = self.versions(model_name)
        return versions[-1].version + 1 if versions else 1

    def register(
        self,
        row: dict[str, Any],
        pipeline: Any,
        *,
        metrics: list[dict[str, Any]],
        trials: list[dict[str, Any]],
        evaluation: Mapping[str, pa.Table] | None = None,
        champion_reason: str | None,
    ) -> ModelVersion:
        """Save the artefact, then write the version, its metrics, trials, evaluation
        tables and (when ``champion_reason`` is given) a champion event, all in one
        transaction.

        If the transaction fails the artefact is deleted: no row without its artefact,
        no artefact without its row.
        """
        name, version = row["model_name"], row["model_version"]
        relative = Path(name) / f"v{version}.skops"
        path = self.artifacts_dir / relative
        if path.exists():
            raise MLError(
                f"artefact {path} already exists for an unregistered version",
                hint="remove it (a previous run was interrupted) and train again",
            )
        sha256 = artifacts.save(pipeline, path)
        full_row = {
            **row,
            "artifact_path": str(relative),
            "artifact_sha256": sha256,
            "created_at": now(),
        }
        try:
            with self.warehouse.transaction():
                self.warehouse.append(
                    VERSIONS,
                    pa.Table.from_pylist([full_row], schema=VERSIONS_SCHEMA),
                    schema=ML_SCHEMA,
                )
                self.warehouse.append(
                    METRICS,
                    pa.Table.from_pylist(metrics, schema=METRICS_SCHEMA),
                    schema=ML_SCHEMA,
                )
                self.warehouse.append(
                    TRIALS,
                    pa.Table.from_pylist(trials, schema=TRIALS_SCHEMA),
                    schema=ML_SCHEMA,
                )
                for table_name, rows in (evaluation or {}).items():
                    self.warehouse.append(table_name, rows, schema=ML_SCHEMA)
                if champion_reason is not None:
                    self._record_champion(name, version, champion_reason)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return ModelVersion(full_row)

    def recover(self) -> list[str]:
        """Delete artefacts that no version row references (left by a killed ``ml train``).

        Only called by a process holding the warehouse's write lock, so no other process
        can be between writing an artefact and committing its row.
        """
        if not self.artifacts_dir.is_dir():
            return []
        registered: set[str] = set()
        if self.warehouse.has_table(VERSIONS, schema=ML_SCHEMA):
            table = self.warehouse.table(VERSIONS, schema=ML_SCHEMA)
            paths = self.warehouse.read_arrow(table.select("artifact_path"))
            registered = set(paths.column("artifact_path").to_pylist())
        notes = []
        for path in sorted(self.artifacts_dir.rglob("*")):
            relative = str(path.relative_to(self.artifacts_dir))
            if path.is_file() and relative not in registered:
                path.unlink()
                notes.append(f"removed artefact {relative}: no registry row (interrupted run)")
        return notes

    def _record_champion(self, model_name: str, version: int, reason: str) -> None:
        event = {
            "model_name": model_name,
            "model_version": version,
            "promoted_at": now(),
            "reason": reason,
        }
        self.warehouse.append(
            CHAMPIONS, pa.Table.from_pylist([event], schema=CHAMPIONS_SCHEMA), schema=ML_SCHEMA
        )

    def promote(self, model_name: str, version: int, *, reason: str) -> ModelVersion:
        """Make ``version`` the champion (it must exist and its artefact must verify)."""
        chosen = self.version(model_name, version)
        self.load_pipeline(chosen)  # refuse to promote a version that cannot be loaded
        current = self.champion(model_name)
        if current is not None and current.version == version:
            raise MLError(f"model {model_name} version {version} is already the champion")
        with self.warehouse.transaction():
            self._record_champion(model_name, version, reason)
        return chosen

    def rollback(self, model_name: str) -> ModelVersion:
        """Make the previous champion the champion again."""
        history = self.champion_history(model_name)
        if not history:
            raise MLError(f"model {model_name} has no champion to roll back from")
        current = history[-1]["model_version"]
        previous = [row["model_version"] for row in history[:-1] if row["model_version"] != current]
        if not previous:
            raise MLError(
                f"model {model_name} has had only one champion (version {current}); "
                "there is nothing to roll back to",
                hint=f"promote another version explicitly: ml promote {model_name} VERSION",
            )
        return self.promote(model_name, previous[-1], reason=f"rollback from version {current}")
