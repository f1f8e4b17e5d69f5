from collections import Counter
from datetime import date

import ibis
import pytest

from ml import split
from ml.errors import MLError
from ml.spec import SplitSpec


@pytest.fixture(scope="module")
def con():  # type: ignore[no-untyped-def]
    return ibis.duckdb.connect()


def _assign(con, ids: list[object], spec: SplitSpec, seed: int) -> dict[object, str]:  # type: ignore[no-untyped-def]
    table = ibis.memtable({"entity": ids})
    result = con.to_pyarrow(split.with_hash_split(table, entity_id="entity", split=spec, seed=seed))
    return dict(
        zip(
            result.column("entity").to_pylist(),
            result.column(split.SPLIT_COLUMN).to_pylist(),
            strict=True,
        )
    )


def test_sql_hash_bucket_equals_the_python_reference(con) -> None:  # type: ignore[no-untyped-def]
    ids = [f"customer-{i}" for i in range(500)] + [str(i) for i in range(500)]
    table = ibis.memtable({"entity": ids})
    buckets = con.to_pyarrow(table.mutate(b=split.hash_bucket(table.entity, seed=11)))
    expected = [split.reference_hash_bucket(i, seed=11) for i in ids]
    assert buckets.column("b").to_pylist() == expected


def test_hash_split_proportions_and_determinism(con) -> None:  # type: ignore[no-untyped-def]
    ids = list(range(20_000))
    spec = SplitSpec()
    first = _assign(con, ids, spec, seed=42)
    counts = Counter(first.values())
    assert abs(counts["train"] / len(ids) - 0.70) < 0.01
    assert abs(counts["valid"] / len(ids) - 0.15) < 0.01
    assert abs(counts["test"] / len(ids) - 0.15) < 0.01
    assert _assign(con, ids, spec, seed=42) == first
    assert all(
        first[i] == split.split_of_bucket(split.reference_hash_bucket(i, seed=42), spec)
        for i in ids[:2000]
    )
    other_seed = _assign(con, ids, spec, seed=43)
    assert sum(first[i] != other_seed[i] for i in ids) > 5_000


def test_hash_split_keeps_an_entitys_rows_together(con) -> None:  # type: ignore[no-untyped-def]
    ids = [i % 300 for i in range(3_000)]  # ten rows per entity
    table = ibis.memtable({"entity": ids, "row": list(range(3_000))})
    result = con.to_pyarrow(
        split.with_hash_split(table, entity_id="entity", split=SplitSpec(), seed=1)
    ).to_pylist()
    per_entity: dict[int, set[str]] = {}
    for row in result:
        per_entity.setdefault(row["entity"], set()).add(row[split.SPLIT_COLUMN])
    assert all(len(splits) == 1 for splits in per_entity.values())


def test_custom_fractions(con) -> None:  # type: ignore[no-untyped-def]
    spec = SplitSpec(train=0.5, valid=0.25, test=0.25)
    counts = Counter(_assign(con, list(range(20_000)), spec, seed=3).values())
    assert abs(counts["train"] / 20_000 - 0.5) < 0.015


def test_time_split_takes_whole_dates_in_order(con) -> None:  # type: ignore[no-untyped-def]
    dates = [date(2020, month, 1) for month in range(1, 13)]
    counts = [(d, 100) for d in dates]
    train_end, valid_end = split.time_boundaries(counts, SplitSpec())
    assert train_end == date(2020, 9, 1)  # 9/12 = 0.75 is the first share >= 0.70
    assert valid_end == date(2020, 11, 1)
    table = ibis.memtable({"as_of": [d for d in dates for _ in range(3)]})
    result = con.to_pyarrow(
        split.with_time_split(table, time_column="as_of", boundaries=(train_end, valid_end))
    ).to_pylist()
    labels = {row["as_of"]: row[split.SPLIT_COLUMN] for row in result}
    assert [labels[d] for d in dates] == ["train"] * 9 + ["valid"] * 2 + ["test"]


def test_time_split_gives_every_split_a_date() -> None:
    counts = [(1, 1000), (2, 1), (3, 1)]
    assert split.time_boundaries(counts, SplitSpec()) == (1, 2)
    with pytest.raises(MLError, match="at least 3 distinct time values, found 2"):
        split.time_boundaries([(1, 5), (2, 5)], SplitSpec())
