"""The only module that talks to the warehouse: connections, reads as Arrow, atomic writes.

Everything goes through Ibis; table and schema names are always passed to Ibis as
identifiers (quoted by its compiler), never formatted into SQL.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
STAGING_PREFIX = "_ml_staging__"
DEFAULT_LOCK_TIMEOUT = 60.0
_LOCK_HOLDER = re.compile(r"Could not set lock on file .*\(PID (\d+)\)")


@dataclasses.dataclass(frozen=True)
class StagedTable:
    """Rows written under a reserved name, waiting to be swapped in (:meth:`Warehouse.stage`)."""

    schema: str
    name: str
    rows: int


def _qualified(name: str, schema: str) -> sge.Table:
    return sge.Table(
        this=sge.to_identifier(name, quoted=True), db=sge.to_identifier(schema, quoted=True)
    )


class Warehouse:
    """An open connection to the project's warehouse.

    Use :meth:`open` to connect from a dbt target; close it (or use it as a context
    manager) before invoking dbt, which opens the warehouse itself.
    """

    def __init__(self, backend: Any, *, target: Target) -> None:
        self._backend = backend
        self.target = target
        self._transaction_depth = 0
        self._streams: list[tuple[pa.RecordBatchReader, Any]] = []

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
            Cap the engine's memory (e.g. ``"1GB"``); by default the profile's
            ``settings.memory_limit`` applies, as it does for dbt.
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
        options: dict[str, Any] = {**target.settings, "read_only": read_only}
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
                if isinstance(error, duckdb.ProgrammingError) and target.settings:
                    raise MLError(
                        f"cannot open warehouse {path} with the settings of dbt target "
                        f"{target.name!r} ({', '.join(sorted(target.settings))}): {error}",
                        hint="fix `settings:` of that output in dbt_project/profiles.yml "
                        "(DuckDB configuration options, e.g. memory_limit: 2GB)",
                    ) from error
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
        # A stream left open (say, held by a traceback) would keep the engine's instance
        # alive, and opening the same file again in this process would then hang.
        for reader, cursor in self._streams:
            reader.close()
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
        reader: pa.RecordBatchReader = cursor.execute(sql).to_arrow_reader(batch_size)
        self._streams.append((reader, cursor))
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
            if failure := self._write_error(error, "the transaction was rolled back"):
                raise failure from error
            raise
        finally:
            self._transaction_depth = 0

    def _write_error(self, error: BaseException, undone: str) -> MLError | None:
        """The engine's or the OS's write failure as an :class:`MLError` (None for others)."""
        if not isinstance(error, duckdb.Error | OSError):
            return None
        return MLError(
            f"writing to warehouse {self.target.path} failed: {error}; "
            f"{undone}, nothing was changed",
            hint="check free disk space and write permission on the warehouse folder",
        )

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
        target = _qualified(name, schema)
        with self.transaction():
            for column in missing.to_sqlglot_column_defs(self._backend.dialect):
                self._backend.raw_sql(sge.Alter(this=target, kind="TABLE", actions=[column]))
            self._backend.insert(name, data, database=schema)

    def replace_table(
        self,
        name: str,
        data: Iterator[pa.RecordBatch] | pa.Table | ir.Table,
        *,
        schema: str,
    ) -> int:
        """Replace ``schema.name`` with the given rows atomically; return the row count.

        ``data`` may be an Ibis expression (computed in the warehouse, even when it reads
        the table it replaces), an Arrow table, or an iterator of record batches, which is
        staged batch by batch (:meth:`stage`) and then swapped in, so memory stays bounded
        whatever the row count. Readers and a crash mid-write see either the old table or
        the complete new one.
        """
        if isinstance(data, ir.Table | pa.Table):
            with self.transaction():
                self.ensure_schema(schema)
                created = self._backend.create_table(name, data, database=schema, overwrite=True)
                return self.count(created)
        staged = self.stage(name, data, schema=schema)
        if staged is None:
            raise ValueError(f"no rows to write into {schema}.{name}")
        try:
            with self.transaction():
                self.swap_in(staged, name)
        finally:
            self.drop_staged(staged)
        return staged.rows

    def stage(
        self, name: str, batches: Iterator[pa.RecordBatch], *, schema: str
    ) -> StagedTable | None:
        """Write record batches into a new staging table for ``schema.name``, committing
        batch by batch; return it, or ``None`` when no batch came.

        A transaction keeps bookkeeping for every statement until it commits, so a
        million-row write made of many appends in one transaction grows the process'
        memory with the rows; committed batch by batch it stays within the engine's
        memory limit. The staging table has a reserved name that nothing reads (and the
        BI snapshot is published only after it is gone): make it visible with
        :meth:`swap_in` inside a transaction, and drop it with :meth:`drop_staged` either
        way. If the process dies first, :meth:`drop_stale_staging` removes it.
        """
        if self._transaction_depth:
            raise RuntimeError("stage() commits batch by batch: call it outside a transaction")
        staged = StagedTable(schema, f"{STAGING_PREFIX}{name}__{uuid.uuid4().hex[:12]}", 0)
        try:
            for batch in batches:
                if staged.rows == 0:
                    self.create_table(staged.name, pa.Table.from_batches([batch]), schema=schema)
                else:
                    self._insert_arrow(staged.name, pa.Table.from_batches([batch]), schema=schema)
                staged = dataclasses.replace(staged, rows=staged.rows + batch.num_rows)
        except BaseException as error:
            self.drop_staged(staged)
            if failure := self._write_error(error, "the staged rows were dropped"):
                raise failure from error
            raise
        return staged if staged.rows else None

    def swap_in(self, staged: StagedTable, name: str) -> None:
        """Replace ``name`` (in the staged table's schema) by the staged table: a drop and
        a rename, so the swap is quick whatever the size. Call it inside a transaction."""
        if not self._transaction_depth:
            raise RuntimeError("swap_in() must run inside a transaction")
        self.drop_table(name, schema=staged.schema)
        self._backend.raw_sql(
            sge.Alter(
                this=_qualified(staged.name, staged.schema),
                kind="TABLE",
                actions=[sge.AlterRename(this=sge.to_identifier(name, quoted=True))],
            )
        )

    def drop_staged(self, staged: StagedTable) -> None:
        """Drop a staging table if it still exists (a no-op after a committed swap)."""
        with contextlib.suppress(duckdb.Error):
            self.drop_table(staged.name, schema=staged.schema)

    def drop_stale_staging(self, *, schema: str) -> list[str]:
        """Drop staging tables a killed process left behind; return their names.

        Only called by a process holding the warehouse's write lock, so none of them can
        belong to a run in progress.
        """
        stale = [t for t in self.list_tables(schema=schema) if t.startswith(STAGING_PREFIX)]
        for name in stale:
            self.drop_table(name, schema=schema)
        return stale

    def _insert_arrow(self, name: str, data: pa.Table, *, schema: str) -> None:
        """Insert Arrow rows by registering them with the engine for one INSERT ... SELECT,
        then unregistering them, so no batch stays referenced after it is written."""
        view = f"ml_batch_{uuid.uuid4().hex}"
        connection = self._backend.con
        connection.register(view, data)
        try:
            target = _qualified(name, schema)
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
        table = _qualified(name, schema)
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
