"""Staged writes: batches committed under a hidden name, swapped in atomically, cleaned up."""

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from ml.dbt import Target
from ml.errors import MLError
from ml.warehouse import STAGING_PREFIX, Warehouse


def _batches(count: int, *, fail_after: int | None = None) -> Iterator[pa.RecordBatch]:
    for index in range(count):
        if index == fail_after:
            raise ValueError("the model failed on batch 3")
        yield pa.record_batch({"id": list(range(index * 10, index * 10 + 10))})


def _ids(warehouse: Warehouse, name: str) -> list[int]:
    table = warehouse.read_arrow(warehouse.table(name, schema="s").order_by("id"))
    return table.column("id").to_pylist()


def _staging(warehouse: Warehouse) -> list[str]:
    return [t for t in warehouse.list_tables(schema="s") if t.startswith(STAGING_PREFIX)]


def test_batches_replace_the_table_and_leave_no_staging_table(warehouse: Warehouse) -> None:
    warehouse.replace_table("t", pa.table({"id": [-1]}), schema="s")
    rows = warehouse.replace_table("t", _batches(5), schema="s")
    assert rows == 50
    assert _ids(warehouse, "t") == list(range(50))
    assert _staging(warehouse) == []


def test_a_failure_mid_stream_keeps_the_old_table_and_drops_the_staged_rows(
    warehouse: Warehouse,
) -> None:
    warehouse.replace_table("t", pa.table({"id": [-1]}), schema="s")
    with pytest.raises(ValueError, match="batch 3"):
        warehouse.replace_table("t", _batches(5, fail_after=3), schema="s")
    assert _ids(warehouse, "t") == [-1]
    assert _staging(warehouse) == []


def test_staged_rows_are_committed_batch_by_batch_but_only_swapped_in_on_request(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    warehouse.replace_table("t", pa.table({"id": [-1]}), schema="s")
    staged = warehouse.stage("t", _batches(3), schema="s")
    assert staged is not None and staged.rows == 30
    assert _staging(warehouse) == [staged.name]
    assert _ids(warehouse, "t") == [-1]  # the published table is untouched until the swap
    with warehouse.transaction():
        warehouse.swap_in(staged, "t")
    assert _ids(warehouse, "t") == list(range(30))
    assert _staging(warehouse) == []


def test_a_swap_rolled_back_keeps_the_old_table(warehouse: Warehouse) -> None:
    warehouse.replace_table("t", pa.table({"id": [-1]}), schema="s")
    staged = warehouse.stage("t", _batches(2), schema="s")
    assert staged is not None
    with pytest.raises(RuntimeError, match="after the swap"), warehouse.transaction():
        warehouse.swap_in(staged, "t")
        raise RuntimeError("failed after the swap, before the commit")
    assert _ids(warehouse, "t") == [-1]
    assert _staging(warehouse) == [staged.name]
    warehouse.drop_staged(staged)
    assert _staging(warehouse) == []


def test_staging_refuses_to_run_inside_a_transaction(warehouse: Warehouse) -> None:
    with pytest.raises(RuntimeError, match="outside a transaction"), warehouse.transaction():
        warehouse.stage("t", _batches(1), schema="s")


def test_no_batches_stage_nothing(warehouse: Warehouse) -> None:
    assert warehouse.stage("t", _batches(0), schema="s") is None
    assert warehouse.list_tables(schema="s") == []


def test_stale_staging_tables_are_dropped_and_nothing_else(warehouse: Warehouse) -> None:
    warehouse.replace_table("t", pa.table({"id": [1]}), schema="s")
    staged = warehouse.stage("t", _batches(1), schema="s")
    assert staged is not None
    assert warehouse.drop_stale_staging(schema="s") == [staged.name]
    assert warehouse.list_tables(schema="s") == ["t"]


def test_the_profiles_engine_settings_apply_to_the_connection(tmp_path: Path) -> None:
    target = Target(
        "test", "duckdb", "main", path=tmp_path / "w.duckdb", settings={"memory_limit": "300MB"}
    )
    with Warehouse.open(target, create=True) as warehouse:
        connection: duckdb.DuckDBPyConnection = warehouse._backend.con
        setting = connection.execute("SELECT current_setting('memory_limit')").fetchone()
    assert setting == ("286.1 MiB",)  # 300 MB, as DuckDB reports it


def test_an_invalid_engine_setting_names_the_target_and_the_fix(tmp_path: Path) -> None:
    target = Target(
        "prod", "duckdb", "main", path=tmp_path / "w.duckdb", settings={"memory_limit": "lots"}
    )
    with pytest.raises(MLError) as caught:
        Warehouse.open(target, create=True)
    assert "dbt target 'prod'" in str(caught.value)
    assert "memory_limit" in str(caught.value)
    assert caught.value.hint is not None and "profiles.yml" in caught.value.hint
