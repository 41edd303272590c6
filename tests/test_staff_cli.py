"""`visitroom practice ...` and `visitroom user ...`: passwords from standard input only,
clear refusals, and a disabled user who cannot sign in."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import argon2

from tests.servers import ROOT

PASSWORD = "a long staff password"


def cli(data: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signalling", *args, "--data-dir", str(data)],
        cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


async def test_practices_and_users_are_added_listed_and_disabled(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add = ("user", "add", "--practice", "p1", "--email", "Ana@Clinic.test", "--name",
           "Dr. Ana Smith", "--role", "provider", "--password-stdin")  # fmt: skip
    refused = await asyncio.to_thread(cli, data, *add, stdin=PASSWORD + "\n")
    assert refused.returncode == 2 and "no practice 'p1'" in refused.stderr
    created = await asyncio.to_thread(
        cli, data, "practice", "create", "--id", "p1", "--name", "Smith Family Clinic"
    )
    assert created.returncode == 0, created.stderr
    short = await asyncio.to_thread(cli, data, *add, stdin="short\n")
    assert short.returncode == 2 and "10-256 characters" in short.stderr
    added = await asyncio.to_thread(cli, data, *add, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    again = await asyncio.to_thread(cli, data, *add, stdin=PASSWORD + "\n")
    assert again.returncode == 2 and "exists already" in again.stderr
    listed = await asyncio.to_thread(cli, data, "user", "list")
    assert "p1\tprovider\tactive\t-\tAna@Clinic.test\tDr. Ana Smith" in listed.stdout
    assert PASSWORD not in listed.stdout + added.stdout + added.stderr
    with sqlite3.connect(data / "staff.sqlite3") as db:
        [(stored,)] = db.execute("SELECT password_hash FROM users").fetchall()
    assert stored.startswith("$argon2id$") and argon2.PasswordHasher().verify(stored, PASSWORD)
    assert (data / "staff.sqlite3").stat().st_mode & 0o077 == 0
    off = await asyncio.to_thread(cli, data, "user", "disable", "--email", "ana@clinic.test")
    assert off.returncode == 0, off.stderr
    listed = await asyncio.to_thread(cli, data, "user", "list", "--practice", "p1")
    assert "\tdisabled\t" in listed.stdout
    with sqlite3.connect(data / "staff.sqlite3") as db:
        db.execute("UPDATE users SET totp_secret = 'JBSWY3DPEHPK3PXPJBSWY3DP'")
    lost = await asyncio.to_thread(cli, data, "user", "reset-totp", "--email", "ana@clinic.test")
    assert lost.returncode == 0, lost.stderr
    with sqlite3.connect(data / "staff.sqlite3") as db:
        assert db.execute("SELECT totp_secret FROM users").fetchall() == [(None,)]


def test_the_password_is_never_an_argument() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "signalling", "user", "add", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "--password-stdin" in done.stdout
    assert "--password " not in done.stdout and "--password=" not in done.stdout
