"""Deterministic train/valid/test splits, computed in SQL through Ibis.

Hash split: the first 16 bits of md5("<seed>:<entity id>") place an entity in [0, 1);
all rows of an entity land in the same split, and md5 is the same on every engine, so
DuckDB, Spark and PostgreSQL assign the same rows. Time split: the earliest time values
(whole values, never cut) take the first fractions of the rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import ibis
import ibis.expr.types as ir

from ml.errors import MLError
from ml.spec import SplitSpec

SPLIT_COLUMN = "ml_split"
SPLITS = ("train", "valid", "test")
_BUCKETS = 16**4
_HEX = "0123456789abcdef"


def hash_bucket(column: ir.Value, *, seed: int) -> ir.IntegerValue:
    """Integer in [0, 65536) from the first four hex digits of md5("<seed>:<value>")."""
    digest = (ibis.literal(f"{seed}:") + column.cast("string")).hexdigest("md5")
    digits = ibis.literal(_HEX)
    bucket: ir.IntegerValue = ibis.literal(0)
    for position in range(4):
        bucket = bucket + digits.find(digest.substr(position, 1)) * 16 ** (3 - position)
    return bucket


def reference_hash_bucket(value: Any, *, seed: int) -> int:
    """Python twin of :func:`hash_bucket`, for tests and for checking an engine."""
    return int(hashlib.md5(f"{seed}:{value}".encode()).hexdigest()[:4], 16)  # noqa: S324


def split_of_bucket(bucket: int, split: SplitSpec) -> str:
    fraction = bucket / _BUCKETS
    if fraction < split.train:
        return "train"
    return "valid" if fraction < split.train + split.valid else "test"


def with_hash_split(table: ir.Table, *, entity_id: str, split: SplitSpec, seed: int) -> ir.Table:
    bucket = hash_bucket(table[entity_id], seed=seed)
    train_end = round(split.train * _BUCKETS)
    valid_end = round((split.train + split.valid) * _BUCKETS)
    label = ibis.cases((bucket < train_end, "train"), (bucket < valid_end, "valid"), else_="test")
    return table.mutate(**{SPLIT_COLUMN: label})


def time_boundaries(counts: Sequence[tuple[Any, int]], split: SplitSpec) -> tuple[Any, Any]:
    """The last time value of train and of valid, from row counts per time value.

    Each split gets at least one time value; a value is never divided between splits.
    """
    ordered = sorted(counts)
    if len(ordered) < 3:
        raise MLError(
            f"a time split needs at least 3 distinct time values, found {len(ordered)}",
            hint="use split method hash, or add history to the feature table",
        )
    total = sum(n for _, n in ordered)
    cumulative = 0
    train_end_index = valid_end_index = None
    for index, (_, n) in enumerate(ordered):
        cumulative += n
        share = cumulative / total
        if train_end_index is None and share >= split.train - 1e-9:
            train_end_index = index
        if valid_end_index is None and share >= split.train + split.valid - 1e-9:
            valid_end_index = index
    assert train_end_index is not None and valid_end_index is not None
    train_end_index = min(train_end_index, len(ordered) - 3)
    valid_end_index = min(max(valid_end_index, train_end_index + 1), len(ordered) - 2)
    return ordered[train_end_index][0], ordered[valid_end_index][0]


def with_time_split(table: ir.Table, *, time_column: str, boundaries: tuple[Any, Any]) -> ir.Table:
    train_end, valid_end = boundaries
    column = table[time_column]
    label = ibis.cases((column <= train_end, "train"), (column <= valid_end, "valid"), else_="test")
    return table.mutate(**{SPLIT_COLUMN: label})
