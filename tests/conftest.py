"""Shared fixtures: temporary projects with real DuckDB files and real dbt runs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml.dbt import resolve_target, run_dbt
from ml.demo_data import JaffleParams
from ml.load import load_demo_data
from ml.project import DBT_TARGET_DIR_ENV, DUCKDB_PATH_ENV, PROJECT_DIR_ENV, Project
from ml.warehouse import Warehouse

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Small enough to build in seconds, large enough for every feature and several stores.
SMALL_JAFFLE = JaffleParams(years=2, scale=0.1, seed=7)


def project_environment(directory: Path) -> dict[str, str]:
    """Environment variables pointing an ``ml`` process at a project inside ``directory``."""
    return {
        PROJECT_DIR_ENV: str(REPO_ROOT),
        DUCKDB_PATH_ENV: str(directory / "warehouse.duckdb"),
        DBT_TARGET_DIR_ENV: str(directory / "dbt_target"),
    }


def copy_dbt_project(root: Path) -> Path:
    """A copy of the repository's dbt project under ``root`` (to edit in a test); returns
    its ``dbt_project`` folder."""
    destination = root / "dbt_project"
    shutil.copytree(
        REPO_ROOT / "dbt_project", destination, ignore=shutil.ignore_patterns("target", "logs")
    )
    return destination


def make_project(directory: Path) -> Project:
    """The repository's dbt project pointed at a warehouse and artefacts inside ``directory``."""
    return Project.at(REPO_ROOT, environ=project_environment(directory))


def open_warehouse(project: Project, *, read_only: bool = False) -> Warehouse:
    return Warehouse.open(resolve_target(project, environ={}), read_only=read_only, create=True)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path)


@pytest.fixture(scope="session")
def built_project_template(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """Small demo data loaded and ``dbt build`` run once per session (do not mutate)."""
    project = make_project(tmp_path_factory.mktemp("built"))
    with open_warehouse(project) as warehouse:
        load_demo_data(warehouse, jaffle=SMALL_JAFFLE, bank_dir=project.bank_dir)
    run_dbt(project, ["build", "--exclude", "source:ml+"], quiet=True)
    return project


@pytest.fixture
def built_project(built_project_template: Project, tmp_path: Path) -> Iterator[Project]:
    """A private copy of the built warehouse, free to change."""
    project = make_project(tmp_path)
    shutil.copy(built_project_template.duckdb_path, project.duckdb_path)
    shutil.copytree(built_project_template.dbt_target_dir, project.dbt_target_dir)
    yield project
