"""Fixtures for end-to-end tests: the demo models trained once per session, and copies."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ml.dbt import run_dbt
from ml.project import Project
from ml.registry import ML_SCHEMA
from ml.workflow import Workspace, score, train
from tests.conftest import make_project, open_warehouse


@pytest.fixture(scope="session")
def trained_template(
    built_project_template: Project, tmp_path_factory: pytest.TempPathFactory
) -> Project:
    """Every demo model trained and scored once on the small demo data."""
    project = copy_project(built_project_template, tmp_path_factory.mktemp("trained"))
    workspace = Workspace.open(project)
    train(workspace, None, progress=lambda _: None)
    score(workspace, None, progress=lambda _: None)
    run_dbt(project, ["build", "--select", "source:ml+"], quiet=True)
    return project


@pytest.fixture
def trained(trained_template: Project, tmp_path: Path) -> Iterator[Project]:
    yield copy_project(trained_template, tmp_path / "copy")


def copy_project(source: Project, directory: Path) -> Project:
    directory.mkdir(parents=True, exist_ok=True)
    project = make_project(directory)
    shutil.copy(source.duckdb_path, project.duckdb_path)
    shutil.copytree(source.dbt_target_dir, project.dbt_target_dir)
    if source.artifacts_dir.exists():
        shutil.copytree(source.artifacts_dir, project.artifacts_dir)
    return project


def table(project: Project, name: str, schema: str = ML_SCHEMA) -> pa.Table:
    with open_warehouse(project, read_only=True) as warehouse:
        return warehouse.read_arrow(warehouse.table(name, schema=schema))


def snapshot(project: Project) -> dict[str, Any]:
    """Every table of the ml schema, and every artefact file: to compare before and after."""
    with open_warehouse(project, read_only=True) as warehouse:
        tables = {
            name: warehouse.read_arrow(warehouse.table(name, schema=ML_SCHEMA)).to_pylist()
            for name in warehouse.list_tables(schema=ML_SCHEMA)
        }
    files = sorted(
        str(p.relative_to(project.artifacts_dir))
        for p in project.artifacts_dir.rglob("*")
        if p.is_file()
    )
    return {"tables": tables, "files": files}
