"""Every `VISITROOM_*` setting the docs name is read by the code, and all it reads are documented.

Static: the code's settings are the whole string literals `"VISITROOM_..."` in
the server's packages (what `env.get(...)` and the CLI's `envvar=` read; a
name inside an error message is not a setting). The documented ones are the
names in the configuration tables of README.md, docs/operations.md and
docs/portal.md (README's `VISITROOM_PORTAL_*` row hands the portal's to it).
Any name the docs mention anywhere must be one the code reads.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_SERVER = {"tests", "bench", "scripts", "web", "docs"}
TABLES = [ROOT / "README.md", ROOT / "docs" / "operations.md", ROOT / "docs" / "portal.md"]
SETTING = re.compile(r"VISITROOM_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_]*\*)")
WHOLE = re.compile(r"VISITROOM_[A-Z0-9_]+")


def server_modules() -> list[Path]:
    packages = [
        d for d in ROOT.iterdir() if (d / "__init__.py").exists() and d.name not in NOT_SERVER
    ]
    assert {"signalling", "portal"} <= {p.name for p in packages}
    return [module for package in packages for module in package.rglob("*.py")]


def read_by_code() -> set[str]:
    names: set[str] = set()
    for module in server_modules():
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            value = node.value if isinstance(node, ast.Constant) else None
            if isinstance(value, str) and WHOLE.fullmatch(value):
                names.add(value)
    return names


def documented_in_tables() -> set[str]:
    rows = (
        line
        for doc in TABLES
        for line in doc.read_text().splitlines()
        if line.lstrip().startswith("|")
    )
    return {name for row in rows for name in SETTING.findall(row)}


def mentioned_in_docs() -> dict[str, set[str]]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {doc.name: set(SETTING.findall(doc.read_text())) for doc in docs}


def test_the_code_reads_settings_and_the_tables_list_settings() -> None:
    assert "VISITROOM_RESUME_WINDOW_S" in read_by_code()
    assert "VISITROOM_PORT" in documented_in_tables()


def test_every_setting_the_code_reads_is_in_a_configuration_table() -> None:
    missing = read_by_code() - documented_in_tables()
    assert not missing, f"read by the code but in no README/operations/portal table: {missing}"


def test_every_setting_the_docs_name_is_read_by_the_code() -> None:
    read = read_by_code()
    unknown = {doc: names - read for doc, names in mentioned_in_docs().items() if names - read}
    assert not unknown, f"documented but never read by the code: {unknown}"
