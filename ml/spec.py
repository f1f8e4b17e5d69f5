"""Typed model specs, read from dbt exposures of ``type: ml`` (spec under ``config.meta.ml``)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ml.errors import MLError
from ml.estimators import algorithm_names, get_algorithm
from ml.metrics import DEFAULT_METRIC, METRICS

_REF = re.compile(r"""^\s*ref\(\s*['"]([A-Za-z0-9_]+)['"]\s*\)\s*$""")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Task = Literal["classification", "regression", "clustering"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitSpec(_Strict):
    """How rows are split into train, validation and test."""

    method: Literal["hash", "time"] = "hash"
    train: float = Field(0.70, gt=0, lt=1)
    valid: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitSpec:
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"train + valid + test must sum to 1, got {self.train} + {self.valid} + "
                f"{self.test} = {total:g}"
            )
        return self


class SearchSpec(_Strict):
    """Hyper-parameter search over each candidate, by k-fold CV on the training split."""

    method: Literal["grid", "random"] = "grid"
    n_iter: int = Field(10, ge=1, description="settings tried per candidate by random search")
    cv_folds: int = Field(5, ge=2, le=20)
    metric: str | None = None


class ScoreSpec(_Strict):
    """Where batch predictions come from and go."""

    relation: str | None = None
    into: str | None = None
    batch_size: int = Field(100_000, ge=1)

    @field_validator("into")
    @classmethod
    def _into_is_identifier(cls, value: str | None) -> str | None:
        if value is not None and not _IDENTIFIER.match(value):
            raise ValueError(f"{value!r} is not a valid table name (letters, digits, underscores)")
        return value


class CostSpec(_Strict):
    """Costs of the two errors of a binary classifier, to choose its decision threshold."""

    false_positive: float = Field(gt=0)
    false_negative: float = Field(gt=0)


class EvaluationSpec(_Strict):
    """What the evaluation tables hold."""

    learning_curve_sizes: list[float] = Field(
        default_factory=lambda: [0.1, 0.325, 0.55, 0.775, 1.0], min_length=2
    )
    permutation_repeats: int = Field(5, ge=1, le=50)
    curve_points: int = Field(200, ge=10, le=5000)
    cost: CostSpec | None = None

    @field_validator("learning_curve_sizes")
    @classmethod
    def _fractions(cls, sizes: list[float]) -> list[float]:
        if any(not 0 < size <= 1 for size in sizes) or sorted(set(sizes)) != sizes:
            raise ValueError(
                f"learning_curve_sizes must be increasing fractions in (0, 1], got {sizes}"
            )
        return sizes


class OutcomesSpec(_Strict):
    """Where outcomes (labels that arrive after scoring) are found."""

    relation: str
    target: str | None = None


class MonitorSpec(_Strict):
    """Drift and performance thresholds, and when a model is too old."""

    psi_warn: float = Field(0.10, gt=0)
    psi_alert: float = Field(0.25, gt=0)
    performance_warn: float = Field(0.05, gt=0)
    performance_alert: float = Field(0.10, gt=0)
    max_age_days: int | None = Field(None, ge=1)
    outcomes: OutcomesSpec | None = None

    @model_validator(mode="after")
    def _ordered(self) -> MonitorSpec:
        if self.psi_warn > self.psi_alert or self.performance_warn > self.performance_alert:
            raise ValueError("warn thresholds must not exceed alert thresholds")
        return self


class ModelSpec(_Strict):
    """The ``config.meta.ml`` block of an ML exposure."""

    task: Task
    relation: str | None = None
    entity_id: str
    target: str | None = None
    time_column: str | None = None
    features: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    split: SplitSpec = SplitSpec()
    candidates: dict[str, dict[str, list[Any]] | None] = Field(min_length=1)
    search: SearchSpec = SearchSpec()
    score: ScoreSpec = ScoreSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    monitor: MonitorSpec = MonitorSpec()
    seed: int = 42
    description: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.task == "clustering":
            if self.target is not None:
                raise ValueError("clustering takes no target; remove `target`")
        elif self.target is None:
            raise ValueError(f"a {self.task} model needs a `target` column")
        if self.split.method == "time" and self.time_column is None:
            raise ValueError("split method `time` needs `time_column` (e.g. as_of_date)")
        for name, grid in self.candidates.items():
            try:
                algorithm = get_algorithm(self.task, name)
            except KeyError as error:
                raise ValueError(str(error.args[0])) from None
            if grid:
                valid = set(algorithm.build(0).get_params())
                unknown = sorted(set(grid) - valid)
                if unknown:
                    raise ValueError(
                        f"candidate {name}: unknown parameter(s) {unknown}; valid: {sorted(valid)}"
                    )
                empty = sorted(key for key, values in grid.items() if not values)
                if empty:
                    raise ValueError(f"candidate {name}: empty search values for {empty}")
        metric = self.metric_name
        if metric not in METRICS or METRICS[metric].task != self.task:
            valid_metrics = sorted(m.name for m in METRICS.values() if m.task == self.task)
            raise ValueError(f"unknown {self.task} metric {metric!r}; choose from {valid_metrics}")
        return self

    @property
    def metric_name(self) -> str:
        return self.search.metric or DEFAULT_METRIC[self.task]

    def grid_for(self, algorithm: str) -> dict[str, list[Any]]:
        """The spec's search space for a candidate, or the registry's default."""
        return dict(self.candidates[algorithm] or get_algorithm(self.task, algorithm).default_grid)


@dataclass(frozen=True)
class Relation:
    """A dbt model's table in the warehouse."""

    model: str
    schema: str
    name: str
    unique_id: str = ""

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class MLModel:
    """An ML exposure, validated, with its relations resolved through the manifest."""

    name: str
    label: str
    spec: ModelSpec
    training: Relation
    scoring: Relation
    predictions_table: str
    description: str | None = None
    feature_sql_checksum: str = ""
    outcomes: Relation | None = None

    @property
    def spec_hash(self) -> str:
        """sha256 of the canonical spec: changes whenever the declaration does."""
        canonical = json.dumps(
            {"name": self.name, "spec": self.spec.model_dump(mode="json")}, sort_keys=True
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def parse_spec(exposure_name: str, raw: Any) -> ModelSpec:
    """Validate a raw spec; errors name the exposure, the key and the valid choices."""
    if not isinstance(raw, dict):
        raise MLError(
            f"exposure {exposure_name}: config.meta.ml must be a mapping, got {type(raw).__name__}",
            hint="see the README's 'Declaring a model' section",
        )
    try:
        return ModelSpec.model_validate(raw)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            location = ".".join(str(part) for part in ("ml", *item["loc"]))
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                message = "unknown key"
                parent: type[BaseModel] = ModelSpec
                for part in item["loc"][:-1]:
                    field = parent.model_fields.get(str(part))
                    annotation = getattr(field, "annotation", None)
                    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                        parent = annotation
                message += f"; valid keys: {sorted(parent.model_fields)}"
            if item["type"] == "literal_error":
                message = f"{message} (got {item['input']!r})"
            problems.append(f"{location}: {message}")
        raise MLError(
            f"exposure {exposure_name}: invalid ml spec:\n  " + "\n  ".join(problems),
            hint="fix the exposure's config.meta.ml in dbt_project/models",
        ) from None


def _ref_name(value: str, *, exposure: str, key: str) -> str:
    match = _REF.match(value)
    if not match:
        raise MLError(
            f"exposure {exposure}: ml.{key} must be written ref('model_name'), got {value!r}"
        )
    return match.group(1)


def _relation(
    manifest: dict[str, Any], model: str, *, exposure: str, key: str, depends_on: list[str]
) -> Relation:
    nodes = [
        node
        for node in manifest["nodes"].values()
        if node["resource_type"] in {"model", "seed", "snapshot"} and node["name"] == model
    ]
    if not nodes:
        raise MLError(f"exposure {exposure}: ml.{key} refers to unknown model {model!r}")
    node = nodes[0]
    if node["unique_id"] not in depends_on:
        raise MLError(
            f"exposure {exposure}: ml.{key} uses ref('{model}'), which is not in the "
            "exposure's depends_on",
            hint=f"add ref('{model}') to depends_on so dbt's lineage shows it",
        )
    return Relation(
        model=model,
        schema=node["schema"],
        name=node.get("alias") or model,
        unique_id=node["unique_id"],
    )


def _ref_relation(
    manifest: dict[str, Any], value: str, *, exposure: str, key: str, depends_on: list[str]
) -> Relation:
    """The relation a ``ref('model')`` value of spec key ``key`` points to."""
    model = _ref_name(value, exposure=exposure, key=key)
    return _relation(manifest, model, exposure=exposure, key=key, depends_on=depends_on)


def _meta(exposure: dict[str, Any]) -> dict[str, Any]:
    config_meta = (exposure.get("config") or {}).get("meta") or {}
    return {**(exposure.get("meta") or {}), **config_meta}


def models_from_manifest(manifest: dict[str, Any]) -> dict[str, MLModel]:
    """Every exposure of ``type: ml`` in the manifest, validated and resolved."""
    models: dict[str, MLModel] = {}
    for exposure in manifest.get("exposures", {}).values():
        if exposure.get("type") != "ml":
            continue
        name = exposure["name"]
        meta = _meta(exposure)
        if "ml" not in meta:
            raise MLError(
                f"exposure {name} has type ml but no config.meta.ml spec",
                hint="add the spec under config: meta: ml: (see the README)",
            )
        spec = parse_spec(name, meta["ml"])
        depends_on = list(exposure.get("depends_on", {}).get("nodes", []))
        if spec.relation is not None:
            training_model = _ref_name(spec.relation, exposure=name, key="relation")
        else:
            refs = [uid for uid in depends_on if uid.startswith("model.")]
            if len(refs) != 1:
                raise MLError(
                    f"exposure {name}: depends_on has {len(refs)} models; say which one "
                    "holds the training features",
                    hint="add relation: ref('feature_model') to the spec",
                )
            training_model = manifest["nodes"][refs[0]]["name"]
        training = _relation(
            manifest, training_model, exposure=name, key="relation", depends_on=depends_on
        )
        scoring = training
        if spec.score.relation is not None:
            scoring = _ref_relation(
                manifest,
                spec.score.relation,
                exposure=name,
                key="score.relation",
                depends_on=depends_on,
            )
        outcomes = None
        if spec.monitor.outcomes is not None:
            outcomes = _ref_relation(
                manifest,
                spec.monitor.outcomes.relation,
                exposure=name,
                key="monitor.outcomes.relation",
                depends_on=depends_on,
            )
        models[name] = MLModel(
            name=name,
            label=exposure.get("label") or name,
            spec=spec,
            training=training,
            scoring=scoring,
            predictions_table=spec.score.into or f"{name}_predictions",
            description=exposure.get("description") or spec.description,
            feature_sql_checksum=lineage_checksum(manifest, training.unique_id),
            outcomes=outcomes,
        )
    return models


def lineage_checksum(manifest: dict[str, Any], unique_id: str) -> str:
    """sha256 over the SQL of a node and of everything upstream of it, macros included.

    Changes whenever the SQL that builds the features changes, anywhere in their lineage.
    """
    nodes = {**manifest.get("nodes", {}), **manifest.get("sources", {})}
    macros = manifest.get("macros", {})
    seen: dict[str, str] = {}
    pending = [unique_id]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        if current in macros:
            macro = macros[current]
            seen[current] = hashlib.sha256(macro.get("macro_sql", "").encode()).hexdigest()
            pending.extend((macro.get("depends_on") or {}).get("macros", []))
        elif current in nodes:
            node = nodes[current]
            seen[current] = (node.get("checksum") or {}).get("checksum", "")
            depends_on = node.get("depends_on") or {}
            pending.extend([*depends_on.get("nodes", []), *depends_on.get("macros", [])])
    canonical = json.dumps(sorted(seen.items()))
    return hashlib.sha256(canonical.encode()).hexdigest()


def select_models(models: dict[str, MLModel], names: list[str] | None) -> list[MLModel]:
    """The named models (all when ``names`` is empty); unknown names list the known ones."""
    if not names:
        return [models[name] for name in sorted(models)]
    unknown = [name for name in names if name not in models]
    if unknown:
        raise MLError(
            f"unknown model(s) {unknown}; declared ML exposures: {sorted(models) or 'none'}",
            hint="declare an exposure of type ml in dbt_project/models (see the README)",
        )
    return [models[name] for name in names]


__all__ = ["MLModel", "ModelSpec", "Relation", "algorithm_names", "models_from_manifest"]
