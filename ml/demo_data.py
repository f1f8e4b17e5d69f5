"""Demo data as Arrow tables: a seeded jaffle shop simulation and UCI Bank Marketing.

Pure functions: nothing here touches the warehouse.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ml.errors import MLError

#: Tables produced by the jaffle shop simulation, in load order.
JAFFLE_TABLES = ("customers", "orders", "items", "stores", "products", "supplies")

BANK_MARKETING_FILE = "bank-additional-full.csv"
BANK_MARKETING_MD5 = "f6cb2c1256ffe2836b36df321f46e92c"


@dataclass(frozen=True)
class JaffleParams:
    """Size and seed of a simulated jaffle shop.

    Parameters
    ----------
    years
        Simulated years of trading, starting 2018-09-01.
    scale
        Multiplier on jafgen's default number of addressable customers per store.
    seed
        Seed for every random source jafgen uses.
    """

    years: int = 3
    scale: float = 1.0
    seed: int = 42

    def __post_init__(self) -> None:
        if self.years < 1:
            raise MLError(f"jaffle shop years must be at least 1, got {self.years}")
        if not 0 < self.scale <= 100:
            raise MLError(f"jaffle shop scale must be in (0, 100], got {self.scale}")


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed ``random``, ``numpy.random``, Faker and ``uuid.uuid4``; restore them on exit."""
    from faker import Faker

    random_state = random.getstate()
    numpy_state = np.random.get_state()  # noqa: NPY002 - restored below
    original_uuid4 = uuid.uuid4
    uuid_rng = random.Random(seed + 1)  # noqa: S311 - reproducible ids, not secrets

    def seeded_uuid4() -> uuid.UUID:
        return uuid.UUID(int=uuid_rng.getrandbits(128), version=4)

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - jafgen draws from the global numpy generator
    Faker.seed(seed)
    uuid.uuid4 = seeded_uuid4
    try:
        yield
    finally:
        uuid.uuid4 = original_uuid4
        random.setstate(random_state)
        np.random.set_state(numpy_state)  # noqa: NPY002


def generate_jaffle_shop(params: JaffleParams) -> dict[str, pa.Table]:
    """Simulate the jaffle shop and return its raw tables.

    The same parameters always give byte-identical tables.

    Parameters
    ----------
    params
        Years, customer scale and seed.

    Returns
    -------
    dict
        ``customers``, ``orders``, ``items``, ``stores``, ``products`` and ``supplies``
        as Arrow tables with jafgen's own column names (money in cents).
    """
    from jafgen.simulation import Simulation
    from jafgen.stores.inventory import Inventory
    from jafgen.stores.market import Market
    from jafgen.stores.stock import Stock

    with _seeded(params.seed):
        simulation = Simulation(params.years, "raw")
        if params.scale != 1.0:
            simulation.markets = [
                Market(
                    market.store, num_customers=max(1, round(market.num_customers * params.scale))
                )
                for market in simulation.markets
            ]
        _run_quietly(simulation)
        rows: dict[str, list[dict[str, Any]]] = {
            "customers": [c.to_dict() for c in simulation.customers.values()],
            "orders": [o.to_dict() for o in simulation.orders],
            "items": [i.to_dict() for o in simulation.orders for i in o.items],
            "stores": [m.store.to_dict() for m in simulation.markets],
            "products": Inventory.to_dict(),
            "supplies": Stock.to_dict(),
        }
    return {name: pa.Table.from_pylist(rows[name]) for name in JAFFLE_TABLES}


def _run_quietly(simulation: Any) -> None:
    """Run jafgen's day loop without its progress bar (it writes to the terminal)."""
    from jafgen.curves import Day

    for day_index in range(simulation.sim_days):
        day = Day(day_index)
        for market in simulation.markets:
            for order, _tweet in market.sim_day(day):
                if order:
                    simulation.orders.append(order)
                    simulation.customers.setdefault(order.customer.customer_id, order.customer)


def file_md5(path: Path) -> str:
    """Return the hex md5 of a file (an integrity check against the published checksum)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def read_bank_marketing(directory: Path, *, expected_md5: str = BANK_MARKETING_MD5) -> pa.Table:
    """Read UCI Bank Marketing (bank-additional-full) after verifying its md5.

    Column names are kept as published (dots included); a ``source_row_number`` column
    (1-based line order) is added because the file has no key.

    Raises
    ------
    MLError
        When the file is missing or its md5 differs from the published one.
    """
    path = directory / BANK_MARKETING_FILE
    if not path.is_file():
        raise MLError(
            f"bank marketing data not found: {path}",
            hint="put the UCI file bank-additional-full.csv there, or set WAREHOUSE_ML_BANK_DIR",
        )
    actual = file_md5(path)
    if actual != expected_md5:
        raise MLError(
            f"bank marketing data {path} has md5 {actual}, expected {expected_md5}; "
            "the file is corrupt or not the UCI release",
            hint="restore the original bank-additional-full.csv (see "
            "ml/datasets/bank_marketing/README.md), or unset WAREHOUSE_ML_BANK_DIR",
        )
    table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=";"))
    row_numbers = pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64))
    return table.append_column("source_row_number", row_numbers)


def table_fingerprint(table: pa.Table) -> str:
    """sha256 of a table's logical content: equal tables give equal fingerprints.

    Hashes, per column, the NULL mask and the non-NULL values, never raw Arrow buffers: an
    engine may leave arbitrary bytes under NULL slots and split rows into batches
    differently from run to run, and neither changes the data.
    """
    digest = hashlib.sha256(table.schema.serialize().to_pybytes())
    digest.update(table.num_rows.to_bytes(8, "little"))
    for column in table.columns:
        array = column.combine_chunks()
        nulls = pc.is_null(array).to_numpy(zero_copy_only=False)
        digest.update(np.packbits(nulls).tobytes())
        values = pc.drop_null(array)
        kind = values.type
        if (
            pa.types.is_integer(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_boolean(kind)
            or pa.types.is_temporal(kind)
        ):
            digest.update(np.ascontiguousarray(values.to_numpy(zero_copy_only=False)).tobytes())
        else:
            digest.update("\x1f".join(map(str, values.to_pylist())).encode())
    return digest.hexdigest()
