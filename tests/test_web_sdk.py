"""The SDK's pure helpers under Node's own test runner (no browser needed)."""

from __future__ import annotations

import shutil
import subprocess

from tests.servers import ROOT

SDK_TESTS = sorted(str(p) for p in (ROOT / "web" / "tests").glob("*.test.mjs"))


def test_the_sdk_unit_tests_pass() -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is needed for the SDK unit tests (apt-get install nodejs)"
    assert SDK_TESTS, "no web/tests/*.test.mjs found"
    result = subprocess.run(
        [node, "--test", *SDK_TESTS], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
