import shutil
from pathlib import Path

import pytest

from ml import demo_data
from ml.demo_data import JaffleParams
from ml.errors import MLError
from ml.load import RAW_SCHEMA, load_demo_data
from ml.project import Project
from tests.conftest import open_warehouse

TINY = JaffleParams(years=1, scale=0.05, seed=5)


def _raw_state(project: Project) -> dict[str, int]:
    with open_warehouse(project) as warehouse:
        tables = warehouse.list_tables(schema=RAW_SCHEMA)
        return {
            name: warehouse.read_arrow(warehouse.table(name, schema=RAW_SCHEMA)).num_rows
            for name in tables
        }


def test_load_reports_counts_and_is_idempotent(project: Project) -> None:
    messages: list[str] = []
    with open_warehouse(project) as warehouse:
        first = load_demo_data(
            warehouse, jaffle=TINY, bank_dir=project.bank_dir, progress=messages.append
        )
    assert [r.skipped for r in first] == [False, False]
    after_first = _raw_state(project)
    assert after_first["bank_marketing"] == 41_188
    assert after_first["raw_orders"] == first[0].row_counts["raw_orders"] > 0
    assert any("bank_marketing: loaded (bank_marketing 41,188)" in m for m in messages)

    with open_warehouse(project) as warehouse:
        second = load_demo_data(warehouse, jaffle=TINY, bank_dir=project.bank_dir)
    assert [r.skipped for r in second] == [True, True]
    assert _raw_state(project) == after_first

    with open_warehouse(project) as warehouse:
        forced = load_demo_data(warehouse, jaffle=TINY, bank_dir=project.bank_dir, force=True)
    assert [r.skipped for r in forced] == [False, False]
    state = _raw_state(project)
    assert state["load_runs"] == 4
    del state["load_runs"], after_first["load_runs"]
    assert state == after_first  # replaced, never duplicated


def test_new_parameters_replace_the_jaffle_tables(project: Project) -> None:
    with open_warehouse(project) as warehouse:
        load_demo_data(warehouse, jaffle=TINY, bank_dir=project.bank_dir)
        bigger = JaffleParams(years=1, scale=0.1, seed=5)
        results = load_demo_data(warehouse, jaffle=bigger, bank_dir=project.bank_dir)
    assert [r.skipped for r in results] == [False, True]
    assert _raw_state(project)["raw_orders"] == results[0].row_counts["raw_orders"]


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_bad_bank_file_loads_nothing(project: Project, tmp_path: Path, problem: str) -> None:
    bank_dir = tmp_path / "bank"
    bank_dir.mkdir()
    if problem == "corrupt":
        source = project.bank_dir / demo_data.BANK_MARKETING_FILE
        (bank_dir / demo_data.BANK_MARKETING_FILE).write_bytes(source.read_bytes()[:-10])
    with open_warehouse(project) as warehouse:
        load_demo_data(warehouse, jaffle=TINY, bank_dir=project.bank_dir)
    before = _raw_state(project)
    with open_warehouse(project) as warehouse, pytest.raises(MLError, match="bank marketing"):
        load_demo_data(
            warehouse, jaffle=JaffleParams(years=1, scale=0.1, seed=9), bank_dir=bank_dir
        )
    assert _raw_state(project) == before


def test_bad_bank_file_on_an_empty_warehouse_creates_no_table(
    project: Project, tmp_path: Path
) -> None:
    with open_warehouse(project) as warehouse, pytest.raises(MLError):
        load_demo_data(warehouse, jaffle=TINY, bank_dir=tmp_path)
    with open_warehouse(project) as warehouse:
        assert not warehouse.has_table("raw_orders", schema=RAW_SCHEMA)
    shutil.rmtree(tmp_path, ignore_errors=True)
