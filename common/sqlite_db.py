"""One SQLite connection on its own thread: WAL, foreign keys, versioned schema.

All database work runs on one common.sqlite_thread.SqliteThread, so the event
loop never blocks on disk. Writes run in `BEGIN IMMEDIATE` transactions, which
also serialise them against other processes using the same file (the CLI).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from common.datadir import private_sqlite
from common.sqlite_thread import SqliteThread

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000


class SqliteDatabase:
    """`schema` brings a database up to date (each store passes its own:
    portal.migrations.migrate, the staff, rooms and webhook schemas)."""

    def __init__(
        self,
        path: Path,
        schema: Callable[[sqlite3.Connection], int],
        name: str,
    ) -> None:
        self.path = path
        self._schema = schema
        self._thread = SqliteThread(name)
        self._db: sqlite3.Connection | None = None
        self._closed = False

    async def start(self) -> None:
        await self._submit(self._open)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._submit(self._close)
        self._thread.stop()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(lambda: fn(self._connection()))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one IMMEDIATE transaction: committed if it returns, rolled back if not."""
        return await self._submit(lambda: self._transaction(fn))

    async def _submit(self, fn: Callable[[], T]) -> T:
        return await self._thread.run(fn)

    # --- on the database thread ---------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"the database {self.path.name} is not open")
        return self._db

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    def _open(self) -> None:
        private_sqlite(self.path)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode=WAL")
        private_sqlite(self.path)
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        self._schema(db)
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
