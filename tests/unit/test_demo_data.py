import random
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from ml import demo_data
from ml.demo_data import JaffleParams
from ml.errors import MLError

TINY = JaffleParams(years=1, scale=0.05, seed=3)


def test_same_seed_and_size_give_byte_identical_tables() -> None:
    first = demo_data.generate_jaffle_shop(TINY)
    second = demo_data.generate_jaffle_shop(TINY)
    assert set(first) == set(demo_data.JAFFLE_TABLES)
    for name in demo_data.JAFFLE_TABLES:
        assert first[name].num_rows > 0, name
        assert demo_data.table_fingerprint(first[name]) == demo_data.table_fingerprint(
            second[name]
        ), name


def test_another_seed_gives_other_data() -> None:
    first = demo_data.generate_jaffle_shop(TINY)
    other = demo_data.generate_jaffle_shop(JaffleParams(years=1, scale=0.05, seed=4))
    assert demo_data.table_fingerprint(first["orders"]) != demo_data.table_fingerprint(
        other["orders"]
    )


def test_size_parameters_scale_the_data() -> None:
    small = demo_data.generate_jaffle_shop(TINY)
    larger = demo_data.generate_jaffle_shop(JaffleParams(years=1, scale=0.2, seed=3))
    assert larger["customers"].num_rows > 2 * small["customers"].num_rows
    assert larger["orders"].num_rows > 2 * small["orders"].num_rows


def test_generation_restores_global_random_state() -> None:
    random.seed(123)
    np.random.seed(123)  # noqa: NPY002
    expected = (random.random(), np.random.random())  # noqa: NPY002
    random.seed(123)
    np.random.seed(123)  # noqa: NPY002
    demo_data.generate_jaffle_shop(TINY)
    assert (random.random(), np.random.random()) == expected  # noqa: NPY002
    assert uuid.uuid4() != uuid.uuid4()  # the real generator is back


def test_bank_marketing_is_read_with_its_published_shape(tmp_path: Path) -> None:
    table = demo_data.read_bank_marketing(_bank_dir())
    assert table.num_rows == 41_188
    assert "duration" in table.column_names and "y" in table.column_names
    assert table.column("source_row_number").to_pylist()[:3] == [1, 2, 3]


def test_missing_bank_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MLError, match=r"bank marketing data not found: .*bank-additional-full"):
        demo_data.read_bank_marketing(tmp_path)


def test_bank_file_with_wrong_md5_is_refused(tmp_path: Path) -> None:
    corrupt = tmp_path / demo_data.BANK_MARKETING_FILE
    shutil.copy(_bank_dir() / demo_data.BANK_MARKETING_FILE, corrupt)
    with corrupt.open("ab") as handle:
        handle.write(b"1;extra\n")
    with pytest.raises(MLError, match=r"has md5 [0-9a-f]{32}, expected f6cb2c12"):
        demo_data.read_bank_marketing(tmp_path)


@pytest.mark.parametrize("bad", [{"years": 0}, {"scale": 0.0}, {"scale": -1.0}])
def test_bad_size_parameters_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(MLError):
        JaffleParams(**bad)  # type: ignore[arg-type]


def _bank_dir() -> Path:
    from ml.project import Project

    return Project.at(Path(__file__).resolve().parents[2]).bank_dir


def test_the_fingerprint_ignores_how_rows_are_split_into_batches() -> None:
    import pyarrow as pa

    table = pa.table({"a": list(range(100)), "b": [str(i) for i in range(100)]})
    rebatched = pa.Table.from_batches(table.to_batches(max_chunksize=7))
    assert rebatched.column("a").num_chunks > 1
    assert demo_data.table_fingerprint(rebatched) == demo_data.table_fingerprint(table)
    changed = table.set_column(0, "a", pa.array([*range(99), 1000]))
    assert demo_data.table_fingerprint(changed) != demo_data.table_fingerprint(table)


def test_the_fingerprint_ignores_bytes_under_null_slots() -> None:
    import numpy as np
    import pyarrow as pa

    validity = pa.array([True, False, True]).buffers()[1]
    arrays = [
        pa.Array.from_buffers(
            pa.float64(), 3, [validity, pa.py_buffer(np.array([1.0, garbage, 3.0]).tobytes())]
        )
        for garbage in (0.0, 123.456)
    ]
    assert arrays[0].to_pylist() == arrays[1].to_pylist() == [1.0, None, 3.0]
    tables = [pa.table({"x": a}) for a in arrays]
    assert demo_data.table_fingerprint(tables[0]) == demo_data.table_fingerprint(tables[1])
    other = pa.table({"x": pa.array([1.0, 2.0, 3.0])})
    assert demo_data.table_fingerprint(other) != demo_data.table_fingerprint(tables[0])
