"""The README's guarantees, proven with real processes: kills, locks, readers, full disks."""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from ml.project import Project
from ml.registry import ML_SCHEMA
from ml.warehouse import STAGING_PREFIX
from ml.workflow import Workspace
from tests.conftest import copy_dbt_project, make_project, open_warehouse, project_environment
from tests.e2e.conftest import copy_project as _copy
from tests.e2e.conftest import snapshot as _snapshot
from tests.e2e.conftest import table as _table

pytestmark = pytest.mark.slow

ML = str(Path(sys.executable).parent / "ml")
BIG_COPIES = 30  # bank_marketing_features x 30 = 1.2M rows to score


@pytest.fixture(scope="session")
def big_template(trained_template: Project, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A trained project whose bank scoring relation has 1.2M rows, scored once."""
    project = _copy(trained_template, tmp_path_factory.mktemp("big"))
    with open_warehouse(project) as warehouse:
        features = warehouse.table("bank_marketing_features", schema="main")
        copies = [
            features.mutate(contact_id=features.contact_id + copy * 100_000)
            for copy in range(BIG_COPIES)
        ]
        bigger = copies[0].union(*copies[1:])
        warehouse.replace_table(
            "bank_marketing_features", warehouse.read_arrow(bigger), schema="main"
        )
    subprocess.run(
        [ML, "score", "bank_term_deposit"], env=_env(project), check=True, capture_output=True
    )
    return project


@pytest.fixture
def big(big_template: Project, tmp_path: Path) -> Iterator[Project]:
    yield _copy(big_template, tmp_path / "big")


def _env(project: Project, **extra: str) -> dict[str, str]:
    directory = project.duckdb_path.parent
    return {**os.environ, **project_environment(directory), **extra}


def _predictions(project: Project) -> dict[str, Any]:
    table = _table(project, "bank_term_deposit_predictions")
    run_ids = set(table.column("scoring_run_id").to_pylist())
    return {"rows": table.num_rows, "runs": run_ids}


def _staging_tables(project: Project) -> list[str]:
    with open_warehouse(project, read_only=True) as warehouse:
        tables = warehouse.list_tables(schema=ML_SCHEMA)
    return [name for name in tables if name.startswith(STAGING_PREFIX)]


def _start_and_kill_mid_stream(
    project: Project, args: list[str], marker: str, delay: float, *, occurrence: int = 1
) -> subprocess.Popen[str]:
    """Start ``ml args`` and SIGKILL it ``delay`` seconds after its output shows ``marker``
    for the ``occurrence``-th time."""
    process = subprocess.Popen(
        [ML, *args], env=_env(project), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    seen = 0
    for line in process.stdout:
        seen += marker in line
        if seen == occurrence:
            break
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return process


def test_sigkill_mid_scoring_leaves_old_or_complete_predictions(big: Project) -> None:
    full = _predictions(big)
    assert full["rows"] == 41_188 * BIG_COPIES and len(full["runs"]) == 1
    rng = random.Random(20261203)
    for attempt in range(3):
        # The second batch is scored once the first is staged (committed, not published).
        process = _start_and_kill_mid_stream(
            big,
            ["score", "bank_term_deposit"],
            "scored ",
            delay=rng.uniform(0.0, 2.0),
            occurrence=2,
        )
        assert process.returncode == -signal.SIGKILL  # killed mid-stream, not after
        after = _predictions(big)
        assert after == full, f"attempt {attempt}: predictions changed by a killed run"
        # The killed run's staging table is there; its predecessors' were dropped.
        assert len(_staging_tables(big)) == 1
    left_by_the_last_kill = _staging_tables(big)
    # Each run marks its killed predecessor failed before starting; the last one waits.
    statuses = [r["status"] for r in _table(big, "scoring_runs").to_pylist()]
    assert (statuses.count("running"), statuses.count("failed")) == (1, 2)
    # Any writing command recovers first, so the BI snapshot never shows the leftovers.
    published = subprocess.run(
        [ML, "publish"], env=_env(big), capture_output=True, text=True, check=True
    )
    assert published.stdout.count("was interrupted; marked failed") == 1
    assert f"dropped {left_by_the_last_kill[0]}, staged by a scoring run" in published.stdout
    assert _staging_tables(big) == []
    with duckdb.connect(str(big.bi_path), read_only=True) as snapshot:
        snapshot_tables = snapshot.execute("SELECT table_name FROM duckdb_tables()").fetchall()
    assert not [name for (name,) in snapshot_tables if name.startswith(STAGING_PREFIX)]
    subprocess.run(
        [ML, "score", "bank_term_deposit"], env=_env(big), capture_output=True, check=True
    )
    final = _predictions(big)
    assert final["rows"] == full["rows"] and len(final["runs"]) == 1
    assert final["runs"] != full["runs"]
    statuses = [r["status"] for r in _table(big, "scoring_runs").to_pylist()]
    assert statuses.count("running") == 0 and statuses.count("failed") == 3


def test_sigkill_mid_training_never_leaves_a_row_without_artefact_or_the_reverse(
    trained: Project,
) -> None:
    rng = random.Random(7)
    for _ in range(3):
        process = _start_and_kill_mid_stream(
            trained,
            ["train", "customer_segments", "--force"],
            "setting(s)",
            delay=rng.uniform(0.0, 0.3),
        )
        assert process.returncode == -signal.SIGKILL  # killed while training, not after
        _assert_rows_have_artefacts(trained)
    # A kill between writing the artefact and committing its row leaves an orphan file;
    # simulate one exactly, then let the next writer recover.
    orphan = trained.artifacts_dir / "customer_segments" / "v99.skops"
    orphan.write_bytes(b"written by a killed run")
    completed = subprocess.run(
        [ML, "train", "customer_segments", "--force"],
        env=_env(trained),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "removed artefact customer_segments/v99.skops" in completed.stdout
    _assert_rows_have_artefacts(trained, exact=True)


def _assert_rows_have_artefacts(project: Project, *, exact: bool = False) -> None:
    rows = {r["artifact_path"] for r in _table(project, "model_versions").to_pylist()}
    files = {
        str(p.relative_to(project.artifacts_dir))
        for p in project.artifacts_dir.rglob("*")
        if p.is_file()
    }
    assert rows <= files, f"registry rows without artefacts: {rows - files}"
    if exact:
        assert files == rows, f"artefacts without rows: {files - rows}"


def test_two_concurrent_scoring_runs_take_turns_and_never_interleave(big: Project) -> None:
    succeeded_before = _succeeded_runs(big)
    processes = [
        subprocess.Popen(
            [ML, "score", "bank_term_deposit"],
            env=_env(big),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert any("waiting up to" in out for out in outputs)  # one waited for the other
    final = _predictions(big)
    assert final["rows"] == 41_188 * BIG_COPIES and len(final["runs"]) == 1
    assert _succeeded_runs(big) == succeeded_before + 2


def _succeeded_runs(project: Project) -> int:
    return [r["status"] for r in _table(project, "scoring_runs").to_pylist()].count("succeeded")


def _hold(path: Path, *, read_only: bool) -> subprocess.Popen[str]:
    """Another process holding a DuckDB connection, as a BI tool or a second writer would."""
    script = textwrap.dedent(f"""
        import sys, duckdb
        connection = duckdb.connect({str(path)!r}, read_only={read_only})
        def runs():
            return sorted(r[0] for r in connection.execute(
                'select distinct scoring_run_id from ml.bank_term_deposit_predictions'
            ).fetchall())
        print(runs(), flush=True)
        for line in sys.stdin:
            if line.strip() == 'reconnect':
                connection.close()
                connection = duckdb.connect({str(path)!r}, read_only=True)
            print(runs(), flush=True)
    """)
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    process.stdout.readline()
    return process


def _ask(process: subprocess.Popen[str], line: str = "again") -> str:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


def test_a_bi_reader_of_the_snapshot_never_blocks_the_pipeline_nor_sees_half_a_write(
    trained: Project,
) -> None:
    Workspace.open(trained).publish()
    reader = _hold(trained.bi_path, read_only=True)
    try:
        before = _ask(reader)
        completed = subprocess.run(
            [ML, "score", "bank_term_deposit"],
            env=_env(trained),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert completed.returncode == 0, completed.stderr
        assert "BI snapshot published" in completed.stdout
        assert _ask(reader) == before  # the open connection keeps its snapshot
        after = _ask(reader, "reconnect")  # a reconnect sees the new, complete one
        assert after != before
        current = sorted(_predictions(trained)["runs"])
        assert after == str(current)
    finally:
        reader.kill()


def test_a_reader_of_the_working_file_makes_the_pipeline_wait_then_fail_clearly(
    trained: Project,
) -> None:
    before = _snapshot(trained)
    holder = _hold(trained.duckdb_path, read_only=True)
    try:
        started = time.monotonic()
        completed = subprocess.run(
            [ML, "score", "bank_term_deposit"],
            capture_output=True,
            text=True,
            env=_env(trained, WAREHOUSE_ML_LOCK_TIMEOUT="2"),
            timeout=120,
        )
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert completed.returncode == 2
    assert f"is in use by another process (PID {holder.pid}); waited 2 s" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert waited >= 2
    assert _snapshot(trained) == before


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_a_full_disk_is_a_clear_error_and_changes_nothing(big: Project) -> None:
    before = _predictions(big)
    completed = subprocess.run(
        [ML, "score", "bank_term_deposit"],
        env=_env(big),
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        timeout=300,
    )
    assert completed.returncode == 2, completed.stderr
    assert "error: writing to warehouse" in completed.stderr
    assert "File too large" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert _predictions(big) == before
    assert _staging_tables(big) == []


def test_a_read_only_warehouse_is_a_clear_error(trained: Project) -> None:
    """The warehouse folder on a read-only file system (a read-only bind mount)."""
    folder = trained.duckdb_path.parent
    before = _snapshot(trained)
    subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], check=True)
    try:
        completed = subprocess.run(
            [ML, "score", "bank_term_deposit"],
            env=_env(trained),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        subprocess.run(["umount", str(folder)], check=True)
    assert completed.returncode == 2, completed.stderr
    assert f"error: cannot open warehouse {trained.duckdb_path}" in completed.stderr
    assert "Read-only file system" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert _snapshot(trained) == before


def test_a_missing_or_corrupt_warehouse_is_a_clear_error(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    env = {**os.environ, **project_environment(tmp_path)}
    missing = subprocess.run([ML, "score"], env=env, capture_output=True, text=True)
    assert missing.returncode == 2
    assert f"warehouse file {project.duckdb_path} does not exist" in missing.stderr
    assert not project.duckdb_path.exists()  # and none was created
    project.duckdb_path.write_bytes(b"not a database" * 1000)
    corrupt = subprocess.run([ML, "models"], env=env, capture_output=True, text=True)
    assert corrupt.returncode == 2
    assert "is not a valid DuckDB database file" in corrupt.stderr
    assert project.duckdb_path.read_bytes() == b"not a database" * 1000


def test_malformed_yaml_is_a_clear_error_and_writes_nothing(
    trained: Project, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    copy_dbt_project(root)
    broken = root / "dbt_project" / "models" / "ml" / "_ml__exposures.yml"
    broken.write_text(broken.read_text().replace("type: ml\n", "type: [ml\n", 1))
    before = _snapshot(trained)
    env = {
        **_env(trained),
        "WAREHOUSE_ML_PROJECT_DIR": str(root),
        "WAREHOUSE_ML_DBT_TARGET_DIR": str(tmp_path / "target"),
    }
    completed = subprocess.run([ML, "train"], env=env, capture_output=True, text=True)
    assert completed.returncode == 2
    assert "error: dbt parse failed" in completed.stderr
    assert "_ml__exposures.yml" in completed.stderr
    assert _snapshot(trained) == before


def test_identifiers_with_quotes_spaces_and_sql_are_quoted_never_interpolated(
    trained: Project,
) -> None:
    evil_table = 'x"; drop table ml.model_versions; --'
    evil_schema = "my schema's"
    with open_warehouse(trained) as warehouse:
        warehouse.replace_table(evil_table, pa.table({"a": [1]}), schema=evil_schema)
        warehouse.update(evil_table, schema=evil_schema, values={"a": 2}, where={"a": 1})
        assert warehouse.list_tables(schema=evil_schema) == [evil_table]
        assert warehouse.read_arrow(
            warehouse.table(evil_table, schema=evil_schema)
        ).to_pylist() == [{"a": 2}]
        assert warehouse.has_table("model_versions", schema=ML_SCHEMA)
    before = _snapshot(trained)
    completed = subprocess.run(
        [ML, "promote", "x'; delete from ml.model_champions; --", "1"],
        env=_env(trained),
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 2 and "has no version 1" in completed.stderr
    assert _snapshot(trained) == before
