"""The commands' logic, between the CLI and the core: open the project's warehouse and
registry, run the steps, return what to print."""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ibis

from ml.dbt import Target, load_manifest, resolve_target, run_dbt
from ml.demo_data import JaffleParams
from ml.errors import MLError
from ml.load import load_demo_data
from ml.monitor import (
    MonitorResult,
    last_monitored_at,
    last_status,
    monitor_model,
    worst_status,
)
from ml.project import Project
from ml.registry import ML_SCHEMA, Registry, now
from ml.report import write_report
from ml.score import recover_interrupted_runs, score_model
from ml.spec import MLModel, models_from_manifest, select_models
from ml.train import train_model
from ml.warehouse import DEFAULT_LOCK_TIMEOUT, LOCK_TIMEOUT_ENV, Warehouse


@dataclass(frozen=True)
class Workspace:
    """A project, the dbt target it runs against, and how long to wait for the warehouse."""

    project: Project
    target: Target
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT

    @classmethod
    def open(cls, project: Project, *, environ: Mapping[str, str] | None = None) -> Workspace:
        env = os.environ if environ is None else environ
        try:
            timeout = float(env.get(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT))
        except ValueError:
            raise MLError(
                f"${LOCK_TIMEOUT_ENV} must be a number of seconds, got {env[LOCK_TIMEOUT_ENV]!r}"
            ) from None
        return cls(project, resolve_target(project, environ=env), timeout)

    @contextmanager
    def warehouse(
        self,
        *,
        read_only: bool = False,
        create: bool = False,
        progress: Callable[[str], None] = print,
    ) -> Iterator[Warehouse]:
        """Open the warehouse, waiting up to ``lock_timeout`` for another writer to finish."""
        with Warehouse.open(
            self.target,
            read_only=read_only,
            create=create,
            lock_timeout=self.lock_timeout,
            on_wait=progress,
        ) as warehouse:
            yield warehouse

    @contextmanager
    def registry(
        self, *, read_only: bool = False, progress: Callable[[str], None] = print
    ) -> Iterator[Registry]:
        """The registry; a writer first recovers from any run that was killed mid-way."""
        with self.warehouse(read_only=read_only, progress=progress) as warehouse:
            registry = Registry(warehouse, self.project.artifacts_dir)
            if not read_only:
                for note in [*registry.recover(), *recover_interrupted_runs(warehouse)]:
                    progress(f"recovered: {note}")
            yield registry

    def publish(self, progress: Callable[[str], None] = print) -> Path:
        """Publish the read-only BI snapshot of the warehouse; return its path.

        Recovery runs first, so a killed run's leftovers (a staging table, a ``running``
        ledger row) never reach the snapshot, whichever command publishes it.
        """
        with self.registry(progress=progress) as registry:
            registry.warehouse.publish_snapshot(self.project.bi_path)
        return self.project.bi_path

    def models(self, names: Sequence[str] | None = None) -> list[MLModel]:
        return select_models(models_from_manifest(load_manifest(self.project)), list(names or []))


def load(
    workspace: Workspace,
    params: JaffleParams,
    *,
    force: bool = False,
    progress: Callable[[str], None] = print,
) -> None:
    with workspace.warehouse(create=True, progress=progress) as warehouse:
        load_demo_data(
            warehouse,
            jaffle=params,
            bank_dir=workspace.project.bank_dir,
            force=force,
            progress=progress,
        )


def build(
    workspace: Workspace,
    select: Sequence[str] | None = None,
    *,
    exclude: Sequence[str] | None = None,
    dbt_vars: str | None = None,
) -> None:
    """``dbt build`` of the selection (dbt syntax), excluding ``exclude``, with ``--vars``."""
    arguments = ["build"]
    if select:
        arguments += ["--select", *select]
    if exclude:
        arguments += ["--exclude", *exclude]
    if dbt_vars:
        arguments += ["--vars", dbt_vars]
    run_dbt(workspace.project, arguments)


def train(
    workspace: Workspace,
    names: Sequence[str] | None,
    progress: Callable[[str], None] = print,
    *,
    force: bool = False,
) -> list[str]:
    """Train each model unless nothing changed since its champion (``force`` retrains)."""
    lines = []
    models = workspace.models(names)
    with workspace.registry(progress=progress) as registry:
        for model in models:
            result = train_model(registry.warehouse, registry, model, progress, force=force)
            line = f"{model.name}: {result.message}"
            progress(line)
            lines.append(line)
    return lines


def score(
    workspace: Workspace,
    names: Sequence[str] | None,
    *,
    version: int | None = None,
    incremental: bool = False,
    progress: Callable[[str], None] = print,
) -> list[str]:
    lines = []
    models = workspace.models(names)
    with workspace.registry(progress=progress) as registry:
        for model in models:
            run = score_model(
                registry.warehouse,
                registry,
                model,
                version=version,
                incremental=incremental,
                progress=progress,
            )
            line = (
                f"{model.name}: {run.rows:,} rows into {run.predictions_table} "
                f"(v{run.model_version}, run {run.scoring_run_id[:8]}, {run.seconds:.1f}s)"
            )
            progress(line)
            lines.append(line)
    return lines


def monitor(
    workspace: Workspace, names: Sequence[str] | None, progress: Callable[[str], None] = print
) -> list[MonitorResult]:
    """Monitor each model's latest scoring run; return the results (status per model)."""
    models = workspace.models(names)
    with workspace.registry(progress=progress) as registry:
        return [monitor_model(registry.warehouse, registry, model, progress) for model in models]


def history(workspace: Workspace, name: str) -> str:
    """The change log of a model: what each version changed, and its champion events."""
    with workspace.registry(read_only=True) as registry:
        versions = registry.versions(name)
        if not versions:
            raise MLError(
                f"model {name} has no registered version", hint=f"train it: ml train {name}"
            )
        status = registry.status(name)
        events = registry.champion_history(name)
    lines = []
    for version in versions:
        row = version.row
        lines.append(
            f"v{version.version}  {row['created_at']:%Y-%m-%d %H:%M}  {status[version.version]:<10}"
            f"  {version.algorithm}  test {row['metric']} {row['test_score']:.4f}"
            f"  (trigger: {row.get('trigger') or 'requested'})"
        )
        lines += [f"    {change}" for change in describe_change_log(row.get("changes"))]
        lines += [
            f"    champion since {e['promoted_at']:%Y-%m-%d %H:%M}: {e['reason']}"
            for e in events
            if e["model_version"] == version.version
        ]
    return "\n".join(lines)


def describe_change_log(changes_json: str | None) -> list[str]:
    """Readable lines from a version's recorded changes."""
    if not changes_json:
        return []
    changes = json.loads(changes_json)
    if changes.get("first_version"):
        return ["first version"]
    lines = []
    if "algorithm" in changes:
        lines.append(f"algorithm: {changes['algorithm']['from']} -> {changes['algorithm']['to']}")
    if "params" in changes:
        lines.append(f"params: {changes['params']['from']} -> {changes['params']['to']}")
    if "spec_keys" in changes:
        lines.append(f"spec changed: {', '.join(changes['spec_keys'])}")
    if "data_fingerprint" in changes:
        lines.append("training data changed")
    if "feature_sql_checksum" in changes:
        lines.append("feature SQL changed")
    if changes.get("library_versions"):
        lines.append("library versions changed")
    deltas = changes.get("test_metric_deltas") or {}
    if deltas:
        shown = ", ".join(
            f"{k} {v:+.4f}" for k, v in sorted(deltas.items()) if not k.startswith("size_")
        )
        lines.append(f"test metrics vs v{changes['previous_version']}: {shown}")
    return lines or ["nothing changed but the run itself"]


@dataclass(frozen=True)
class RunSummary:
    """What `ml run` did per model, and the worst monitoring status."""

    lines: list[str]
    status: str


def select_by_pattern(
    models: list[MLModel], select: Sequence[str] | None, exclude: Sequence[str] | None
) -> list[MLModel]:
    """dbt-style selection of ML models by name, with shell wildcards (``customer_*``)."""
    patterns = list(select or [])
    unknown = [
        p
        for p in [*patterns, *(exclude or [])]
        if not any(fnmatch.fnmatchcase(m.name, p) for m in models)
    ]
    if unknown:
        raise MLError(
            f"no ML model matches {unknown}; declared: {sorted(m.name for m in models)}",
            hint="select by exposure name; wildcards like customer_* work",
        )
    chosen = [
        m
        for m in models
        if (not patterns or any(fnmatch.fnmatchcase(m.name, p) for p in patterns))
        and not any(fnmatch.fnmatchcase(m.name, p) for p in exclude or [])
    ]
    if not chosen:
        raise MLError("the selection leaves no model to run", hint="check --select/--exclude")
    return chosen


def _retrain_trigger(
    registry: Registry, model: MLModel, *, on_alert: bool, progress: Callable[[str], None]
) -> str | None:
    """Why the model must be retrained regardless of its fingerprint, if at all.

    Each reason triggers one retraining per champion: if the version trained for it did
    not beat the champion, retraining again on the same data would not either.
    """
    champion = registry.champion(model.name)
    if champion is None:
        return None
    # (how the trigger starts, the trigger, what to say when it was already tried)
    reasons = []
    if on_alert and last_status(registry.warehouse, model.name) == "alert":
        reasons.append(("monitoring alert", "monitoring alert", "the alert persists"))
    limit = model.spec.monitor.max_age_days
    age = (now() - champion.row["created_at"]).days
    if limit is not None and age > limit:
        reasons.append(
            (
                "champion is",
                f"champion is {age} days old (max_age_days {limit})",
                "the champion is still too old",
            )
        )
    since = registry.champion_history(model.name)[-1]["promoted_at"]
    for kind, reason, persisting in reasons:
        tried = [
            v
            for v in registry.versions(model.name)
            if (v.row.get("trigger") or "").startswith(kind) and v.row["created_at"] > since
        ]
        if not tried:
            return reason
        progress(
            f"{model.name}: {persisting}; v{tried[-1].version} was trained for it and did not "
            f"beat champion v{champion.version}: refresh the training data or investigate"
        )
    return None


def run(
    workspace: Workspace,
    select: Sequence[str] | None = None,
    *,
    exclude: Sequence[str] | None = None,
    force: bool = False,
    incremental: bool = False,
    dbt_vars: str | None = None,
    retrain_on_alert: bool = True,
    progress: Callable[[str], None] = print,
) -> RunSummary:
    """The whole graph for the selected models: dbt build of what they need, train when
    needed, score, monitor, then dbt build of what reads the ml tables."""
    models = select_by_pattern(workspace.models(), select, exclude)
    names = [m.name for m in models]
    progress(f"[1/5] dbt build: everything {', '.join(names)} depend(s) on")
    build(workspace, [f"+exposure:{name}" for name in names], dbt_vars=dbt_vars)
    lines: dict[str, list[str]] = {name: [] for name in names}
    statuses = []
    with workspace.registry(progress=progress) as registry:
        warehouse = registry.warehouse
        progress("[2/5] train (skipped where nothing changed)")
        for model in models:
            trigger = _retrain_trigger(
                registry, model, on_alert=retrain_on_alert, progress=progress
            )
            if trigger:
                progress(f"{model.name}: retraining: {trigger}")
            result = train_model(
                warehouse,
                registry,
                model,
                progress,
                force=force or trigger is not None,
                trigger=trigger or ("forced" if force else "scheduled run"),
            )
            lines[model.name].append(("trained " if result.trained else "") + result.message)
        progress("[3/5] score")
        for model in models:
            scored = score_model(
                warehouse, registry, model, incremental=incremental, progress=progress
            )
            lines[model.name].append(f"scored {scored.rows:,} rows into {scored.predictions_table}")
        progress("[4/5] monitor")
        for model in models:
            result_monitor = monitor_model(warehouse, registry, model, progress)
            statuses.append(result_monitor.status)
            lines[model.name].append(f"monitoring {result_monitor.status}")
    progress("[5/5] dbt build: what reads the ml tables")
    build(workspace, ["source:ml+"], dbt_vars=dbt_vars)
    return RunSummary(
        [f"{name}: {'; '.join(parts)}" for name, parts in lines.items()], worst_status(statuses)
    )


def models_table(workspace: Workspace, names: Sequence[str] | None = None) -> str:
    """A readable table of every registered version: status, algorithm, key metrics."""
    with workspace.registry(read_only=True) as registry:
        wanted = list(names or registry.model_names())
        header = (
            "model",
            "version",
            "status",
            "algorithm",
            "metric",
            "valid",
            "test",
            "baseline",
            "created_at",
        )
        rows: list[tuple[str, ...]] = [header]
        for name in wanted:
            status = registry.status(name)
            for version in registry.versions(name):
                row = version.row
                baseline = row["baseline_test_score"]
                rows.append(
                    (
                        name,
                        str(version.version),
                        status[version.version],
                        version.algorithm,
                        str(row["metric"]),
                        f"{row['valid_score']:.4f}",
                        f"{row['test_score']:.4f}",
                        "-" if baseline is None else f"{baseline:.4f}",
                        row["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
                    )
                )
    if len(rows) == 1:
        return "no registered models yet: train one with `ml train NAME`"
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def promote(workspace: Workspace, name: str, version: int) -> str:
    with workspace.registry() as registry:
        registry.promote(name, version, reason="promoted by hand")
    return f"{name}: version {version} is now the champion"


def rollback(workspace: Workspace, name: str) -> str:
    with workspace.registry() as registry:
        restored = registry.rollback(name)
    return f"{name}: rolled back; version {restored.version} is the champion again"


def report(
    workspace: Workspace,
    names: Sequence[str] | None,
    *,
    version: int | None = None,
    progress: Callable[[str], None] = print,
) -> list[Path]:
    """Write the HTML report of each model's champion (or ``version``); return the paths."""
    models = workspace.models(names)
    with workspace.registry(read_only=True) as registry:
        return [
            write_report(
                registry,
                model.name,
                version=version,
                label=model.label,
                description=model.description,
                directory=workspace.project.reports_dir,
                progress=progress,
            )
            for model in models
        ]


def demo_summary(workspace: Workspace, models: list[MLModel]) -> list[str]:
    """One line per model: chosen algorithm, test metric beside the baseline, predictions."""
    lines = []
    with workspace.registry(read_only=True) as registry:
        for model in models:
            champion = registry.champion(model.name)
            if champion is None:
                continue
            row = champion.row
            metric = row["metric"]
            baseline = row["baseline_test_score"]
            versus = "" if baseline is None else f" (baseline {baseline:.4f})"
            predictions = registry.warehouse.table(model.predictions_table, schema=ML_SCHEMA)
            count = registry.warehouse.count(predictions)
            params = json.loads(row["params"])
            lines.append(
                f"{model.name} [{row['task']}]: v{champion.version} {champion.algorithm} "
                f"{json.dumps(params)}; test {metric} {row['test_score']:.4f}{versus}; "
                f"ml.{model.predictions_table}: {count:,} rows"
            )
    return lines


#: dbt models rebuilt to move the scoring snapshot to another as-of date.
SNAPSHOT_MODELS = [
    "int_customer_as_of_dates_spined",
    "int_customer_features_computed",
    "customer_features_current",
]


def replay(
    workspace: Workspace,
    models: list[MLModel],
    *,
    months: int = 4,
    progress: Callable[[str], None] = print,
) -> list[MonitorResult]:
    """Score and monitor the last ``months`` monthly as-of dates, oldest first, as a
    monthly schedule would have: real drift, and outcomes known for each date."""
    replayed = [m for m in models if m.outcomes is not None and m.spec.time_column]
    if not replayed:
        return []
    time_column = replayed[0].spec.time_column
    assert time_column is not None
    with workspace.warehouse(read_only=True, progress=progress) as warehouse:
        outcomes = replayed[0].outcomes
        assert outcomes is not None
        table = warehouse.table(outcomes.name, schema=outcomes.schema)
        dates = (
            warehouse.read_arrow(
                table.select(time_column).distinct().order_by(ibis.desc(time_column)).limit(months)
            )
            .column(time_column)
            .to_pylist()
        )
    results = []
    for as_of in sorted(dates):
        progress(f"replay: scoring the snapshot as of {as_of}")
        run_dbt(
            workspace.project,
            [
                "build",
                "--select",
                *SNAPSHOT_MODELS,
                "--vars",
                json.dumps({"scoring_as_of_date": str(as_of)}),
            ],
            quiet=True,
        )
        with workspace.registry(progress=progress) as registry:
            for model in replayed:
                score_model(registry.warehouse, registry, model, progress=lambda _: None)
                results.append(monitor_model(registry.warehouse, registry, model, progress))
    return results


def demo(
    workspace: Workspace, params: JaffleParams, progress: Callable[[str], None] = print
) -> list[str]:
    """Load, build, train (skipped when unchanged), replay a few months of scheduled
    scoring with monitoring the first time, then `ml run` everything and write reports."""
    load(workspace, params, progress=progress)
    build(workspace, exclude=["source:ml+"])
    models = workspace.models()
    train(workspace, None, progress)
    with workspace.registry(read_only=True, progress=progress) as registry:
        fresh = []
        for m in models:
            monitored_at = last_monitored_at(registry.warehouse, m.name)
            trained_at = registry.versions(m.name)[-1].row["created_at"]
            if monitored_at is None or monitored_at < trained_at:
                fresh.append(m)
    replay(workspace, fresh, progress=progress)
    # The demo shows alerts; acting on them is `ml run`'s job (and the tests').
    summary = run(workspace, retrain_on_alert=False, progress=progress)
    paths = report(workspace, [m.name for m in models], progress=progress)
    return [
        *demo_summary(workspace, models),
        *summary.lines,
        *[f"report: {path}" for path in paths],
    ]
