"""Security guarantees: secrets stay out of errors, no eval/exec/pickle, SQL through builders."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ml.dbt import resolve_target
from ml.errors import MLError
from ml.project import Project
from ml.warehouse import Warehouse
from tests.conftest import copy_dbt_project

PACKAGE = Path(__file__).resolve().parents[2] / "ml"
SECRET = "s3cr3t-Pa55w0rd"
SQL_STATEMENT = re.compile(
    r"\b(select\s.+\sfrom|insert\s+into|update\s+\S+\s+set|delete\s+from|"
    r"(create|drop|alter)\s+(table|view|schema))\b",
    re.IGNORECASE | re.DOTALL,
)
PROFILE = """
warehouse_ml:
  target: "{{ env_var('WAREHOUSE_ML_TARGET', 'duckdb') }}"
  outputs:
    duckdb:
      type: duckdb
      path: "{{ env_var('WAREHOUSE_ML_DUCKDB_PATH', '../warehouse/warehouse.duckdb') }}"
    postgres:
      type: postgres
      host: localhost
      user: analytics
      password: "{{ env_var('WAREHOUSE_ML_PG_PASSWORD') }}"
      dbname: analytics
      schema: main
"""


@pytest.fixture
def project_with_secret(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    copy_dbt_project(root)
    (root / "dbt_project" / "profiles.yml").write_text(PROFILE)
    return root


def test_a_password_from_the_environment_never_appears_in_targets_or_errors(
    project_with_secret: Path,
) -> None:
    environ = {"WAREHOUSE_ML_TARGET": "postgres", "WAREHOUSE_ML_PG_PASSWORD": SECRET}
    project = Project.at(project_with_secret, environ=environ)
    target = resolve_target(project, environ=environ)
    assert SECRET not in repr(target)
    with pytest.raises(MLError) as caught:
        Warehouse.open(target)
    assert SECRET not in str(caught.value)
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "ml"), "models"],
        env={**os.environ, **environ, "WAREHOUSE_ML_PROJECT_DIR": str(project_with_secret)},
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 2
    assert "adapter 'postgres'" in completed.stderr
    assert SECRET not in completed.stdout + completed.stderr


def test_a_missing_secret_names_the_variable_not_a_value(project_with_secret: Path) -> None:
    environ = {"WAREHOUSE_ML_TARGET": "postgres"}
    with pytest.raises(MLError, match="needs environment variable WAREHOUSE_ML_PG_PASSWORD"):
        resolve_target(Project.at(project_with_secret, environ=environ), environ=environ)


def test_a_secret_in_the_engine_settings_is_never_shown(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    dbt_dir = copy_dbt_project(root)
    profile = (dbt_dir / "profiles.yml").read_text()
    (dbt_dir / "profiles.yml").write_text(
        profile.replace(
            "      settings:\n",
            "      settings:\n"
            "        s3_secret_access_key: \"{{ env_var('WAREHOUSE_ML_S3_SECRET') }}\"\n"
            "        threads: not-a-number\n",
        )
    )
    environ = {"WAREHOUSE_ML_S3_SECRET": SECRET, "WAREHOUSE_ML_DUCKDB_PATH": str(tmp_path / "w")}
    target = resolve_target(Project.at(root, environ=environ), environ=environ)
    assert target.settings["s3_secret_access_key"] == SECRET
    assert SECRET not in repr(target)
    # An invalid setting beside it: the error names the settings, never their values.
    with pytest.raises(MLError, match="s3_secret_access_key, threads") as caught:
        Warehouse.open(target, create=True)
    assert SECRET not in str(caught.value)


def _calls(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = node.func
            names.append(
                function.id
                if isinstance(function, ast.Name)
                else function.attr
                if isinstance(function, ast.Attribute)
                else ""
            )
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_no_eval_exec_pickle_or_sql_text_in_the_package(path: Path) -> None:
    source = path.read_text()
    tree = ast.parse(source)
    calls = _calls(tree)
    assert "eval" not in calls and "exec" not in calls
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {"pickle", "cloudpickle", "joblib", "dill"} & (imported | modules)
    # SQL is built by Ibis or sqlglot: no SQL statements in string literals.
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert not SQL_STATEMENT.search(node.value), f"{path.name}: {node.value[:60]!r}"
