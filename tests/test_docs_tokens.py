"""docs/tokens.md cannot rot: its Python and Node examples run, and the server accepts the
tokens they print; its scope table is common/scopes.py's."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from common.scopes import KNOWN, ROOMS_ADMIN, Grant
from common.tokens import TokenVerifier
from tests.conftest import API_KEY, API_SECRET
from tests.servers import ROOT, ServerProcess

DOC = ROOT / "docs" / "tokens.md"
BLOCK = re.compile(r"^```(python|js)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def examples(language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(DOC.read_text()) if lang == language]


def run(command: list[str]) -> str:
    env = {**os.environ, "VISITROOM_API_KEY": API_KEY, "VISITROOM_API_SECRET": API_SECRET}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_doc_has_two_python_examples_and_one_node_example() -> None:
    assert (len(examples("python")), len(examples("js"))) == (2, 1)


@pytest.mark.parametrize(
    "command",
    [
        *([sys.executable, "-c", code] for code in examples("python")),
        *(["node", "-e", code] for code in examples("js")),
    ],
    ids=["python-sdk", "python-pyjwt", "node-crypto"],
)
async def test_each_example_mints_a_rest_token_the_server_accepts(
    client: TestClient[Any, Any], command: list[str]
) -> None:
    minted = run(command)
    claims = TokenVerifier({API_KEY: API_SECRET}).verify_admin(minted)
    assert Grant.of(claims).scopes == {ROOMS_ADMIN}
    assert claims.expires_at <= time.time() + 301  # the 5 minutes the examples ask for
    response = await client.get("/v1/rooms", headers={"Authorization": f"Bearer {minted}"})
    assert response.status == 200, await response.text()
    assert (await response.json())["scopes"] == [ROOMS_ADMIN]


def test_the_scope_table_is_the_servers() -> None:
    text = DOC.read_text()
    table = text[text.index("## Scopes") : text.index("Typical tokens")]
    assert set(re.findall(r"^\| `([a-z:]+)` \|", table, re.MULTILINE)) == KNOWN


def test_the_docs_cite_tokens_md_and_no_missing_protocol_file() -> None:
    readme, protocol = (ROOT / "README.md").read_text(), (ROOT / "docs" / "protocol.md").read_text()
    assert "docs/tokens.md" in readme and "(tokens.md)" in protocol
    for folder in ("docs", "web", "common", "signalling", "portal", "visitroom"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".md", ".py", ".js", ".html", ".yaml"}:
                assert "PROTOCOL" + ".md" not in path.read_text(), path  # not in the repository
    assert "PROTOCOL" + ".md" not in readme


@pytest.mark.slow
async def test_the_readme_rest_example_runs_against_a_real_server(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    using = readme[readme.index("## Using it") :]
    block = using[using.index("```bash\n") + 8 : using.index("```\n", using.index("```bash\n") + 8)]
    unset: dict[str, str | None] = {"VISITROOM_API_KEY": None, "VISITROOM_API_SECRET": None}
    # no media in the example: the SFU in-process spares starting and stopping workers
    server = ServerProcess(tmp_path / "data", unset, "--workers", "0")
    try:
        await server.start()
        script = (
            block.replace(".venv/bin/visitroom", f"{sys.executable} -m signalling")
            .replace("--data-dir data", f"--data-dir {server.data_dir}")
            .replace("http://127.0.0.1:8080", server.url)
        )
        script = "set -euo pipefail\n" + script + '\nprintf "\\nHOST=%s\\n" "$HOST"\n'
        result = await asyncio.to_thread(
            subprocess.run,
            ["bash", "-c", script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.kill()
    assert result.returncode == 0, result.stderr
    created, _, host_line = result.stdout.rpartition("\nHOST=")
    assert json.loads(created)["room_id"] == "visit-1"
    stored = json.loads((server.data_dir / "credentials.json").read_text())
    verifier = TokenVerifier({stored["api_key"]: stored["api_secret"]})
    assert verifier.verify_for_room(host_line.strip(), "visit-1").is_host
