"""The only module that talks to the warehouse: connections, reads as Arrow, atomic writes.

Everything goes through Ibis; table and schema names are always passed to Ibis as
identifiers (quoted by its compiler), never formatted into SQL.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import ibis
import ibis.expr.types as ir
import pyarrow as pa
import sqlglot.expressions as sge

from ml.dbt import Target
from ml.errors import MLError

LOCK_TIMEOUT_ENV = "WAREHOUSE_ML_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 60.0
_LOCK_HOLDER = re.compile(r"Could not set lock on file .*\(PID (\d+)\)")


class Warehouse:
    """An open connection to the project's warehouse.

    Use :meth:`open` to connect from a dbt target; close it (or use it as a context
    manager) before invoking dbt, which opens the warehouse itself.
    """

    def __init__(self, backend: Any, *, target: Target) -> None:
        self._backend = backend
        self.target = target
        self._transaction_depth = 0
        self._cursors: list[Any] = []

    @classmethod
    def open(
        cls,
        target: Target,
        *,
        read_only: bool = False,
        create: bool = False,
        memory_limit: str | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        on_wait: Callable[[str], None] | None = None,
    ) -> Warehouse:
        """Connect to the warehouse that ``target`` (the dbt profile's output) names.

        Parameters
        ----------
        target
            The rendered dbt output.
        read_only
            Open without taking the write lock (DuckDB allows many read-only processes).
        create
            Create the warehouse file when it does not exist (only loading does).
        memory_limit
            Cap the engine's memory (e.g. ``"1GB"``), for bounded streaming.
        lock_timeout
            Seconds to wait while another process holds the warehouse's write lock
            (a DuckDB file has one writer at a time), before failing with a clear error.
        on_wait
            Told once when the open has to wait for the lock.
        """
        if target.type != "duckdb":
            raise MLError(
                f"dbt target {target.name!r} uses adapter {target.type!r}; "
                "the Python layer supports duckdb so far",
                hint="set WAREHOUSE_ML_TARGET=duckdb",
            )
        assert target.path is not None
        path = Path(target.path)
        if not create and not path.is_file():
            raise MLError(
                f"warehouse file {path} does not exist",
                hint="create it first: ml load && ml build (or make demo)",
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {"read_only": read_only}
        if memory_limit is not None:
            options["memory_limit"] = memory_limit
        deadline = time.monotonic() + lock_timeout
        waiting = False
        while True:
            try:
                backend = ibis.duckdb.connect(str(path), **options)
                break
            except duckdb.Error as error:
                holder = _LOCK_HOLDER.search(str(error))
                if holder is None:
                    raise MLError(
                        f"cannot open warehouse {path}: {error}",
                        hint="check that the file is a DuckDB database; restore it from a "
                        "backup or rebuild it with make demo",
                    ) from error
                if time.monotonic() >= deadline:
                    raise MLError(
                        f"warehouse {path} is in use by another process (PID {holder.group(1)})"
                        f"; waited {lock_timeout:g} s for its write lock",
                        hint=f"wait for that run to finish, or raise ${LOCK_TIMEOUT_ENV}. BI "
                        "tools should read the published snapshot, not this file (README)",
                    ) from error
                if not waiting and on_wait is not None:
                    on_wait(
                        f"warehouse {path} is in use by PID {holder.group(1)}; waiting "
                        f"up to {lock_timeout:g} s for its lock"
                    )
                waiting = True
                time.sleep(0.2)
        return cls(backend, target=target)

    def close(self) -> None:
        for cursor in self._cursors:
            cursor.close()
        self._backend.disconnect()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # reads -----------------------------------------------------------------------------

    def has_table(self, name: str, *, schema: str) -> bool:
        return name in self.list_tables(schema=schema)

    def list_tables(self, *, schema: str) -> list[str]:
        if schema not in self._backend.list_databases():
            return []
        return sorted(self._backend.list_tables(database=schema))

    def table(self, name: str, *, schema: str, hint: str | None = None) -> ir.Table:
        """Return a table expression, or a clear error naming the missing relation."""
        if not self.has_table(name, schema=schema):
            raise MLError(
                f"relation {schema}.{name} does not exist in {self.target.path}",
                hint=hint or "build it with dbt: ml build",
            )
        return self._backend.table(name, database=schema)

    def read_arrow(self, expr: ir.Table) -> pa.Table:
        """Execute an expression and return the result as one Arrow table."""
        return self._backend.to_pyarrow(expr)

    def count(self, expr: ir.Table) -> int:
        count: int = self._backend.to_pyarrow(expr.count()).as_py()
        return count

    def stream(self, expr: ir.Table, *, batch_size: int = 100_000) -> pa.RecordBatchReader:
        """Execute an expression and stream the result as Arrow record batches.

        The stream runs on its own cursor, so the connection stays free for writes (a
        DuckDB connection drops a pending result when it runs the next statement).
        """
        sql = self._backend.compile(expr)
        cursor = self._backend.con.cursor()
        self._cursors.append(cursor)
        reader: pa.RecordBatchReader = cursor.execute(sql).to_arrow_reader(batch_size)
        return reader

    # writes ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all; nested blocks join the outer one."""
        if self._transaction_depth:
            self._transaction_depth += 1
            try:
                yield
            finally:
                self._transaction_depth -= 1
            return
        connection = self._backend.con
        connection.begin()
        self._transaction_depth = 1
        try:
            yield
            connection.commit()
        except BaseException as error:
            with contextlib.suppress(duckdb.Error):
                connection.rollback()
            if isinstance(error, duckdb.Error | OSError):
                raise MLError(
                    f"writing to warehouse {self.target.path} failed: {error}; "
                    "the transaction was rolled back, nothing was changed",
                    hint="check free disk space and write permission on the warehouse folder",
                ) from error
            raise
        finally:
            self._transaction_depth = 0

    def ensure_schema(self, schema: str) -> None:
        if schema not in self._backend.list_databases():
            self._backend.create_database(schema, force=True)

    def replace_tables(self, tables: Mapping[str, pa.Table], *, schema: str) -> None:
        """Create or replace several tables in one transaction."""
        with self.transaction():
            self.ensure_schema(schema)
            for name, data in tables.items():
                self._backend.create_table(name, data, database=schema, overwrite=True)

    def create_table(self, name: str, data: pa.Table | ir.Table, *, schema: str) -> None:
        """Create a table that must not exist yet (the safe default: fail, not replace)."""
        self.ensure_schema(schema)
        self._backend.create_table(name, data, database=schema)

    def append(self, name: str, data: pa.Table | ir.Table, *, schema: str) -> None:
        """Append rows, creating the table on first use.

        Columns the table lacks are added first (NULL in older rows), so a newer release
        can keep writing to tables an older one created.
        """
        if not self.has_table(name, schema=schema):
            self.create_table(name, data, schema=schema)
            return
        new = ibis.schema(data.schema) if isinstance(data, pa.Table) else data.schema()
        existing = set(self._backend.table(name, database=schema).columns)
        missing = ibis.schema({k: v for k, v in new.items() if k not in existing})
        target = sge.Table(
            this=sge.to_identifier(name, quoted=True), db=sge.to_identifier(schema, quoted=True)
        )
        with self.transaction():
            for column in missing.to_sqlglot_column_defs(self._backend.dialect):
                self._backend.raw_sql(sge.Alter(this=target, kind="TABLE", actions=[column]))
            self._backend.insert(name, data, database=schema)

    def replace_table(
        self,
        name: str,
        batches: Iterator[pa.RecordBatch] | pa.Table | ir.Table,
        *,
        schema: str,
    ) -> int:
        """Replace ``schema.name`` with the given rows in one transaction; return the row count.

        ``batches`` may be Arrow data or an Ibis expression (computed in the warehouse, even
        when it reads the table it replaces). Readers and a crash mid-write see either the
        old table or the complete new one.
        """
        if isinstance(batches, ir.Table):
            with self.transaction():
                self.ensure_schema(schema)
                created = self._backend.create_table(name, batches, database=schema, overwrite=True)
                return self.count(created)
        if isinstance(batches, pa.Table):
            batches = iter(
                batches.to_batches() or [pa.RecordBatch.from_pylist([], schema=batches.schema)]
            )
        rows = 0
        with self.transaction():
            self.ensure_schema(schema)
            first = next(batches, None)
            if first is None:
                raise ValueError(f"no rows to write into {schema}.{name}")
            self._backend.create_table(
                name, pa.Table.from_batches([first]), database=schema, overwrite=True
            )
            rows += first.num_rows
            for batch in batches:
                self._insert_arrow(name, pa.Table.from_batches([batch]), schema=schema)
                rows += batch.num_rows
        return int(rows)

    def _insert_arrow(self, name: str, data: pa.Table, *, schema: str) -> None:
        """Insert Arrow rows by registering them with the engine for one INSERT ... SELECT,
        then unregistering them, so no batch stays referenced after it is written."""
        view = f"ml_batch_{uuid.uuid4().hex}"
        connection = self._backend.con
        connection.register(view, data)
        try:
            target = sge.Table(
                this=sge.to_identifier(name, quoted=True), db=sge.to_identifier(schema, quoted=True)
            )
            statement = sge.insert(
                sge.select(*(sge.column(c, quoted=True) for c in data.column_names)).from_(
                    sge.to_identifier(view, quoted=True)
                ),
                into=target,
                columns=[sge.to_identifier(c, quoted=True) for c in data.column_names],
            )
            self._backend.raw_sql(statement)
        finally:
            connection.unregister(view)

    def update(
        self, name: str, *, schema: str, values: Mapping[str, Any], where: Mapping[str, Any]
    ) -> None:
        """Set ``values`` on the rows matching every ``column == value`` of ``where``.

        The statement is built by sqlglot: identifiers quoted, values as literals, nothing
        formatted into SQL text.
        """
        table = sge.Table(
            this=sge.to_identifier(name, quoted=True), db=sge.to_identifier(schema, quoted=True)
        )
        condition = sge.and_(
            *(
                sge.column(column, quoted=True).eq(sge.convert(value))
                for column, value in where.items()
            )
        )
        statement = sge.Update(
            this=table,
            expressions=[
                sge.EQ(this=sge.column(column, quoted=True), expression=sge.convert(value))
                for column, value in values.items()
            ],
            where=sge.Where(this=condition),
        )
        with self.transaction():
            self._backend.raw_sql(statement)

    def publish_snapshot(self, destination: Path) -> None:
        """Publish a read-only copy of the warehouse file for BI tools, atomically.

        The file is checkpointed and copied while this connection holds the write lock,
        then renamed over ``destination`` in one step: a BI tool connected to the old
        snapshot keeps reading it until it reconnects, and never sees a half-written file.
        """
        assert self.target.path is not None
        self._backend.con.checkpoint()
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".partial")
        try:
            shutil.copyfile(self.target.path, partial)
            os.replace(partial, destination)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise MLError(
                f"publishing the BI snapshot {destination} failed: {error}",
                hint="check free disk space; the previous snapshot is unchanged",
            ) from error

    def drop_table(self, name: str, *, schema: str) -> None:
        self._backend.drop_table(name, database=schema, force=True)
