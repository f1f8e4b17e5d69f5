"""The commands' logic, between the CLI and the core: open the project's warehouse and
registry, run the steps, return what to print."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ml.dbt import Target, load_manifest, resolve_target, run_dbt
from ml.demo_data import JaffleParams
from ml.errors import MLError
from ml.load import load_demo_data
from ml.project import Project
from ml.registry import Registry
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

    def publish(self) -> Path:
        """Publish the read-only BI snapshot of the warehouse; return its path."""
        with self.warehouse(progress=lambda _: None) as warehouse:
            warehouse.publish_snapshot(self.project.bi_path)
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
) -> None:
    """``dbt build`` of the selection (dbt syntax), excluding ``exclude``."""
    arguments = ["build"]
    if select:
        arguments += ["--select", *select]
    if exclude:
        arguments += ["--exclude", *exclude]
    run_dbt(workspace.project, arguments)


def train(
    workspace: Workspace, names: Sequence[str] | None, progress: Callable[[str], None] = print
) -> list[str]:
    lines = []
    models = workspace.models(names)
    with workspace.registry(progress=progress) as registry:
        for model in models:
            _, status = train_model(registry.warehouse, registry, model, progress)
            line = f"{model.name}: {status}"
            progress(line)
            lines.append(line)
    return lines


def score(
    workspace: Workspace,
    names: Sequence[str] | None,
    *,
    version: int | None = None,
    progress: Callable[[str], None] = print,
) -> list[str]:
    lines = []
    models = workspace.models(names)
    with workspace.registry(progress=progress) as registry:
        for model in models:
            run = score_model(
                registry.warehouse, registry, model, version=version, progress=progress
            )
            line = (
                f"{model.name}: {run.rows:,} rows into {run.predictions_table} "
                f"(v{run.model_version}, run {run.scoring_run_id[:8]}, {run.seconds:.1f}s)"
            )
            progress(line)
            lines.append(line)
    return lines


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
            predictions = registry.warehouse.table(model.predictions_table, schema="ml")
            count = registry.warehouse.count(predictions)
            params = json.loads(row["params"])
            lines.append(
                f"{model.name} [{row['task']}]: v{champion.version} {champion.algorithm} "
                f"{json.dumps(params)}; test {metric} {row['test_score']:.4f}{versus}; "
                f"ml.{model.predictions_table}: {count:,} rows"
            )
    return lines


def demo(
    workspace: Workspace, params: JaffleParams, progress: Callable[[str], None] = print
) -> list[str]:
    """Load the demo data, build with dbt, train when no champion exists, score, summarise."""
    load(workspace, params, progress=progress)
    build(workspace, exclude=["source:ml+"])
    models = workspace.models()
    with workspace.registry(read_only=True) as registry:
        untrained = [m.name for m in models if registry.champion(m.name) is None]
    if untrained:
        train(workspace, untrained, progress)
    else:
        progress("every model has a champion; retrain with: ml train NAME")
    score(workspace, [m.name for m in models], progress=progress)
    build(workspace, ["source:ml+"])
    paths = report(workspace, [m.name for m in models], progress=progress)
    return [*demo_summary(workspace, models), *[f"report: {path}" for path in paths]]
