"""dbt invocation (in a child process) and access to its profile and manifest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2.sandbox import SandboxedEnvironment

from ml.errors import MLError
from ml.project import TARGET_ENV, Project

PROFILE_NAME = "warehouse_ml"


@dataclass(frozen=True)
class Target:
    """The dbt output the project runs against, as rendered from ``profiles.yml``."""

    name: str
    type: str
    schema: str
    path: Path | None = None
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """The engine settings of the output (dbt-duckdb's ``settings``, e.g. ``memory_limit``),
    applied by the Python layer too, so both sides of the pipeline run under the same limits.
    Never shown: settings may hold credentials (``s3_secret_access_key``)."""


def _render(value: Any, environ: Mapping[str, str]) -> Any:
    """Render ``{{ env_var('X', 'default') }}`` in profile values, as dbt does."""
    if isinstance(value, dict):
        return {key: _render(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, environ) for item in value]
    if not isinstance(value, str) or "{{" not in value:
        return value

    def env_var(name: str, default: str | None = None) -> str:
        if name in environ:
            return environ[name]
        if default is None:
            raise MLError(
                f"profiles.yml needs environment variable {name}, which is not set",
                hint=f"export {name}=...",
            )
        return default

    return SandboxedEnvironment().from_string(value).render(env_var=env_var)


def resolve_target(project: Project, *, environ: Mapping[str, str] | None = None) -> Target:
    """Read ``dbt_project/profiles.yml`` and return the selected output.

    Only ``env_var`` is rendered; the profile's secrets never leave this function except
    as adapter credentials.
    """
    env = {**(os.environ if environ is None else environ), **project.dbt_environment()}
    env.setdefault(TARGET_ENV, env.get(TARGET_ENV, "duckdb"))
    profiles_path = project.dbt_dir / "profiles.yml"
    try:
        profiles = yaml.safe_load(profiles_path.read_text())
        profile = profiles[PROFILE_NAME]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise MLError(
            f"cannot read profile {PROFILE_NAME!r} from {profiles_path}: {error}",
            hint="restore dbt_project/profiles.yml from the repository",
        ) from error
    name = str(_render(profile.get("target", "duckdb"), env))
    outputs = profile.get("outputs", {})
    if name not in outputs:
        raise MLError(
            f"dbt target {name!r} is not defined in {profiles_path}",
            hint=f"choose one of {sorted(outputs)} with ${TARGET_ENV}",
        )
    output = _render(outputs[name], env)
    path = output.get("path")
    if path is not None and output["type"] == "duckdb":
        path = Path(path)
        if not path.is_absolute():
            path = (project.dbt_dir / path).resolve()
    settings = output.get("settings") or {}
    if not isinstance(settings, dict):
        raise MLError(
            f"settings of dbt target {name!r} in {profiles_path} must be a mapping, "
            f"not a {type(settings).__name__}",
            hint="write them as `settings:` followed by indented `key: value` lines",
        )
    return Target(
        name=name,
        type=output["type"],
        schema=output.get("schema", "main"),
        path=path,
        settings=settings,
    )


def _dbt_executable() -> str:
    beside_python = Path(sys.executable).parent / "dbt"
    found = str(beside_python) if beside_python.is_file() else shutil.which("dbt")
    if found is None:
        raise MLError("the dbt executable was not found", hint="install the project: make install")
    return found


def run_dbt(project: Project, args: Sequence[str], *, quiet: bool = False) -> None:
    """Run one dbt command against the project's profile, in a child process.

    A child process rather than ``dbtRunner``: dbt-duckdb keeps its DuckDB handle open
    after an in-process invocation, which would hold the warehouse's single-writer lock
    (and fix its configuration) for the rest of the ``ml`` process.

    Parameters
    ----------
    project
        The project whose ``dbt_project/`` and warehouse are used.
    args
        The dbt command and its arguments, e.g. ``["build", "--select", "staging+"]``.
    quiet
        Capture dbt's log and show it only when dbt fails.

    Raises
    ------
    MLError
        When dbt fails; the message names the command and, when quiet, ends with dbt's log.
    """
    command = [
        _dbt_executable(),
        *(["--quiet"] if quiet else []),
        *args,
        "--project-dir",
        str(project.dbt_dir),
        "--profiles-dir",
        str(project.dbt_dir),
        "--target-path",
        str(project.dbt_target_dir),
    ]
    project.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, **project.dbt_environment()}
    environment.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    completed = subprocess.run(
        command,
        env=environment,
        cwd=project.dbt_dir,
        capture_output=quiet,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        log = (completed.stdout or "") + (completed.stderr or "") if quiet else ""
        tail = "\n".join(log.strip().splitlines()[-25:])
        raise MLError(
            f"dbt {' '.join(args)} failed (exit {completed.returncode})"
            + (f":\n{tail}" if tail else ""),
            hint="fix the model or test dbt names, then run again",
        )


def load_manifest(project: Project) -> dict[str, Any]:
    """Return dbt's ``manifest.json``, running ``dbt parse`` when it is missing or stale."""
    manifest_path = project.dbt_target_dir / "manifest.json"
    if _manifest_is_stale(project, manifest_path):
        run_dbt(project, ["parse"], quiet=True)
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    return manifest


def _manifest_is_stale(project: Project, manifest_path: Path) -> bool:
    if not manifest_path.is_file():
        return True
    built = manifest_path.stat().st_mtime
    sources = [
        p
        for p in project.dbt_dir.rglob("*")
        if p.suffix in {".sql", ".yml", ".yaml", ".csv", ".md"}
        and project.dbt_target_dir not in p.parents
        and "dbt_packages" not in p.parts
        and "logs" not in p.parts
    ]
    return any(p.stat().st_mtime > built for p in sources)
