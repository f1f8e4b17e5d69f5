"""Load the demo data into the warehouse's ``raw`` schema: idempotent and all-or-nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import ibis
import pyarrow as pa

from ml import demo_data
from ml.demo_data import JaffleParams
from ml.warehouse import Warehouse

RAW_SCHEMA = "raw"
LOAD_LEDGER = "load_runs"


@dataclass(frozen=True)
class LoadResult:
    """What happened to one dataset."""

    dataset: str
    fingerprint: str
    row_counts: dict[str, int]
    skipped: bool

    def describe(self) -> str:
        counts = ", ".join(f"{table} {rows:,}" for table, rows in self.row_counts.items())
        verb = "up to date" if self.skipped else "loaded"
        return f"{self.dataset}: {verb} ({counts})"


def _jaffle_fingerprint(params: JaffleParams) -> str:
    described = json.dumps(
        {
            "generator": "jafgen==0.4.14",
            "years": params.years,
            "scale": params.scale,
            "seed": params.seed,
        },
        sort_keys=True,
    )
    return hashlib.sha256(described.encode()).hexdigest()


def _last_load(warehouse: Warehouse, dataset: str) -> dict[str, object] | None:
    if not warehouse.has_table(LOAD_LEDGER, schema=RAW_SCHEMA):
        return None
    ledger = warehouse.table(LOAD_LEDGER, schema=RAW_SCHEMA)
    latest = ledger.filter(ledger.dataset == dataset).order_by(ibis.desc("loaded_at")).limit(1)
    rows = warehouse.read_arrow(latest).to_pylist()
    return rows[0] if rows else None


def _is_current(warehouse: Warehouse, dataset: str, fingerprint: str) -> dict[str, int] | None:
    """The row counts of the last load when it had this fingerprint and its tables exist."""
    last = _last_load(warehouse, dataset)
    if last is None or last["fingerprint"] != fingerprint:
        return None
    counts: dict[str, int] = json.loads(str(last["row_counts"]))
    if not all(warehouse.has_table(name, schema=RAW_SCHEMA) for name in counts):
        return None
    return counts


def load_demo_data(
    warehouse: Warehouse,
    *,
    jaffle: JaffleParams,
    bank_dir: Path,
    force: bool = False,
    progress: Callable[[str], None] = print,
) -> list[LoadResult]:
    """Load the jaffle shop simulation and UCI Bank Marketing into ``raw``.

    Both datasets are checked before anything is written (the bank file's md5 first),
    then every table and the load ledger are written in one transaction. A dataset
    whose fingerprint (generator parameters, or file md5) matches its last load is
    skipped, unless ``force``.

    Returns
    -------
    list of LoadResult
        One per dataset, with row counts.
    """
    bank_table = demo_data.read_bank_marketing(bank_dir)  # raises before any write
    bank_fingerprint = demo_data.BANK_MARKETING_MD5
    jaffle_fingerprint = _jaffle_fingerprint(jaffle)

    results: list[LoadResult] = []
    to_write: dict[str, pa.Table] = {}
    ledger_rows: list[dict[str, object]] = []

    current = None if force else _is_current(warehouse, "jaffle_shop", jaffle_fingerprint)
    if current is not None:
        results.append(LoadResult("jaffle_shop", jaffle_fingerprint, current, skipped=True))
    else:
        progress(
            f"generating the jaffle shop: {jaffle.years} years, scale {jaffle.scale}, "
            f"seed {jaffle.seed} ..."
        )
        tables = {f"raw_{name}": t for name, t in demo_data.generate_jaffle_shop(jaffle).items()}
        to_write.update(tables)
        counts = {name: t.num_rows for name, t in tables.items()}
        results.append(LoadResult("jaffle_shop", jaffle_fingerprint, counts, skipped=False))
        ledger_rows.append(
            {
                "dataset": "jaffle_shop",
                "fingerprint": jaffle_fingerprint,
                "row_counts": json.dumps(counts),
            }
        )

    current = None if force else _is_current(warehouse, "bank_marketing", bank_fingerprint)
    if current is not None:
        results.append(LoadResult("bank_marketing", bank_fingerprint, current, skipped=True))
    else:
        counts = {"bank_marketing": bank_table.num_rows}
        to_write["bank_marketing"] = bank_table
        results.append(LoadResult("bank_marketing", bank_fingerprint, counts, skipped=False))
        ledger_rows.append(
            {
                "dataset": "bank_marketing",
                "fingerprint": bank_fingerprint,
                "row_counts": json.dumps(counts),
            }
        )

    if to_write:
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        ledger = pa.Table.from_pylist(
            [{**row, "loaded_at": loaded_at} for row in ledger_rows],
            schema=pa.schema(
                [
                    ("dataset", pa.string()),
                    ("fingerprint", pa.string()),
                    ("row_counts", pa.string()),
                    ("loaded_at", pa.timestamp("us")),
                ]
            ),
        )
        with warehouse.transaction():
            warehouse.ensure_schema(RAW_SCHEMA)
            for name, table in to_write.items():
                warehouse.replace_table(name, table, schema=RAW_SCHEMA)
            warehouse.append(LOAD_LEDGER, ledger, schema=RAW_SCHEMA)
    for result in results:
        progress(result.describe())
    return results
