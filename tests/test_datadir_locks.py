"""Making a database file private never drops the SQLite locks this process holds on it.

POSIX drops all of a process's locks on a file when any descriptor of that file is
closed. A store that opened its database file again once connected (to chmod it)
lost its locks; another process (`visitroom webhooks`, `visitroom portal ...`) that
then closed its own connection took itself for the last one and removed the WAL
and its index under the server's connection: the server went on reading an old
snapshot, and writing where nobody would read.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from common.datadir import private_sqlite

ROOT = Path(__file__).resolve().parent.parent
# What a store does when it opens (here in the other process, as the CLI does).
OPEN_STORE = """
import sqlite3, sys
from pathlib import Path
from common.datadir import private_sqlite

def open_store(path):
    private_sqlite(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript("CREATE TABLE IF NOT EXISTS t (v TEXT)")
    private_sqlite(path)
    return db
"""
OTHER_PROCESS = (
    OPEN_STORE
    + """
db = open_store(Path(sys.argv[1]))
if sys.argv[2] == "write":
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE t SET v = 'new'")
    db.execute("COMMIT")
else:
    db.execute("SELECT * FROM t").fetchall()
db.close()
"""
)


def open_store(path: Path) -> sqlite3.Connection:
    namespace: dict[str, object] = {}
    exec(OPEN_STORE, namespace)  # the same steps as the other process
    db = namespace["open_store"](path)  # type: ignore[operator]
    assert isinstance(db, sqlite3.Connection)
    return db


def test_a_store_sees_what_another_process_wrote_after_making_its_file_private(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    server = open_store(path)
    for _ in range(3):
        server.execute("BEGIN IMMEDIATE")
        server.execute("INSERT INTO t VALUES ('old')")
        server.execute("COMMIT")
    for step in ("read", "read", "write"):  # e.g. `visitroom webhooks list`, then `replay`
        command = [sys.executable, "-c", OTHER_PROCESS, str(path), step]
        subprocess.run(command, check=True, timeout=30, cwd=ROOT)
    assert server.execute("SELECT DISTINCT v FROM t").fetchall() == [("new",)]
    server.execute("INSERT INTO t VALUES ('server')")
    other = sqlite3.connect(path)
    assert other.execute("SELECT COUNT(*) FROM t").fetchall() == [(4,)]
    other.close()
    server.close()
    assert path.stat().st_mode & 0o777 == 0o600
    private_sqlite(tmp_path / "new.sqlite3")  # a missing file is still created private
    assert (tmp_path / "new.sqlite3").stat().st_mode & 0o777 == 0o600
