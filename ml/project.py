"""Where a warehouse-ml project keeps its files, resolved once at the edge."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ml.errors import MLError

PROJECT_DIR_ENV = "WAREHOUSE_ML_PROJECT_DIR"
DUCKDB_PATH_ENV = "WAREHOUSE_ML_DUCKDB_PATH"
TARGET_ENV = "WAREHOUSE_ML_TARGET"
BANK_DIR_ENV = "WAREHOUSE_ML_BANK_DIR"
#: The UCI Bank Marketing copy shipped with the package (see its README for the licence).
PACKAGED_BANK_DIR = Path(__file__).parent / "datasets" / "bank_marketing"
ARTIFACTS_DIR_ENV = "WAREHOUSE_ML_ARTIFACTS_DIR"
BI_PATH_ENV = "WAREHOUSE_ML_BI_PATH"
DBT_TARGET_DIR_ENV = "WAREHOUSE_ML_DBT_TARGET_DIR"


@dataclass(frozen=True)
class Project:
    """Paths of one project: its dbt project, embedded warehouse and artefacts.

    Parameters
    ----------
    root
        The folder holding ``dbt_project/``.
    duckdb_path
        The embedded DuckDB warehouse file (used when the dbt target is DuckDB).
    artifacts_dir
        Where model artefacts are written.
    dbt_target_dir
        dbt's ``target/`` folder (manifest, compiled SQL, docs).
    bank_dir
        Folder holding the UCI Bank Marketing files.
    bi_path
        The read-only snapshot of the warehouse published for BI tools (DuckDB only).
    """

    root: Path
    duckdb_path: Path
    artifacts_dir: Path
    dbt_target_dir: Path
    bank_dir: Path
    bi_path: Path

    @property
    def dbt_dir(self) -> Path:
        return self.root / "dbt_project"

    @property
    def reports_dir(self) -> Path:
        return self.duckdb_path.parent / "reports"

    @classmethod
    def discover(
        cls, start: Path | None = None, *, environ: Mapping[str, str] | None = None
    ) -> Project:
        """Find the project from ``$WAREHOUSE_ML_PROJECT_DIR`` or the working directory up."""
        env = os.environ if environ is None else environ
        if PROJECT_DIR_ENV in env:
            root = Path(env[PROJECT_DIR_ENV]).resolve()
            if not (root / "dbt_project" / "dbt_project.yml").is_file():
                raise MLError(
                    f"${PROJECT_DIR_ENV}={root} holds no dbt_project/dbt_project.yml",
                    hint=f"point ${PROJECT_DIR_ENV} at a warehouse-ml checkout",
                )
        else:
            here = (start or Path.cwd()).resolve()
            candidates = [here, *here.parents]
            found = [p for p in candidates if (p / "dbt_project" / "dbt_project.yml").is_file()]
            if not found:
                raise MLError(
                    f"no warehouse-ml project (dbt_project/dbt_project.yml) in {here} "
                    "or its parents",
                    hint=f"run ml inside the project, or set ${PROJECT_DIR_ENV}",
                )
            root = found[0]
        return cls.at(root, environ=env)

    @classmethod
    def at(cls, root: Path, *, environ: Mapping[str, str] | None = None) -> Project:
        """The project rooted at ``root``, with paths overridable by environment variables."""
        env = os.environ if environ is None else environ
        root = root.resolve()
        duckdb_path = Path(env.get(DUCKDB_PATH_ENV, root / "warehouse" / "warehouse.duckdb"))
        if not duckdb_path.is_absolute():
            # dbt resolves a relative path from dbt_project/, so we do too.
            duckdb_path = (root / "dbt_project" / duckdb_path).resolve()
        artifacts_dir = Path(env.get(ARTIFACTS_DIR_ENV, duckdb_path.parent / "artifacts"))
        bank_dir = Path(env.get(BANK_DIR_ENV, PACKAGED_BANK_DIR))
        bi_path = Path(env.get(BI_PATH_ENV, duckdb_path.parent / "bi" / duckdb_path.name))
        dbt_target_dir = Path(env.get(DBT_TARGET_DIR_ENV, root / "dbt_project" / "target"))
        return cls(
            root=root,
            duckdb_path=duckdb_path,
            artifacts_dir=artifacts_dir.resolve(),
            dbt_target_dir=dbt_target_dir.resolve(),
            bank_dir=bank_dir.resolve(),
            bi_path=bi_path.resolve(),
        )

    def dbt_environment(self) -> dict[str, str]:
        """Environment variables that make dbt's profile point where this project does."""
        return {DUCKDB_PATH_ENV: str(self.duckdb_path)}
