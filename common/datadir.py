"""The data directory holds patient data: it is 0700 and every file in it 0600.

`visitroom` sets the umask to 0o077 at start, so whatever it creates is
private; the stores also chmod their own files (and SQLite's -wal, -shm and
-journal companions), which fixes the 0644 files of older versions and keeps
files private when the app runs inside another program with another umask.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
ALLOW_OPEN_ENV = "VISITROOM_ALLOW_OPEN_DATA_DIR"


def make_private_dir(path: Path) -> None:
    """Create `path` (and missing parents) 0700; an existing directory is left as it is."""
    if path.is_dir():
        return
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path.chmod(DIR_MODE)  # mkdir's mode goes through the umask


def private_file(path: Path) -> None:
    """Create `path` empty and 0600 if it is missing, else make it 0600.

    An existing file is only chmod-ed, never opened: closing a descriptor of a
    database drops every POSIX lock this process holds on it, SQLite's included,
    and another process closing its connection would then take itself for the
    last one and remove the WAL under ours (tests/test_datadir_locks.py)."""
    make_private_dir(path.parent)
    if path.exists():
        path.chmod(FILE_MODE)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def private_sqlite(path: Path) -> None:
    """Before and after opening a database: it and its companion files are 0600.

    SQLite creates -wal, -shm and -journal files with the database file's
    mode, so a 0600 database keeps the ones made later private too.
    """
    private_file(path)
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            companion.chmod(FILE_MODE)


def open_to_others(path: Path) -> int:
    """The group/other permission bits of `path` (0 when private or missing)."""
    try:
        return stat.S_IMODE(path.stat().st_mode) & 0o077
    except FileNotFoundError:
        return 0


def open_dir_problem(path: Path) -> str | None:
    """Why `path` may not hold the data (group or others may read, write or enter it)."""
    if not open_to_others(path):
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    return (
        f"the data directory {path} is open to other users (mode {mode:04o}); it holds "
        f"patient names, birth dates, emails and password hashes. Run `chmod 700 {path}`, "
        f"or start with --allow-open-data-dir ({ALLOW_OPEN_ENV}=1) if access to it is "
        "controlled some other way"
    )


def allow_open_from_env(env: Mapping[str, str]) -> bool:
    return env.get(ALLOW_OPEN_ENV, "").strip().lower() in ("1", "true", "yes")
