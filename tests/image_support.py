"""The container image for tests: built once per session with scripts/image.sh,
and run the way this kind of machine allows (see run_flags)."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path

import pytest

from tests.servers import ROOT

IMAGE = "localhost/visitroom:pytest"
UID = 10001  # the image's user


def base_image() -> str:
    """The Debian-package base scripts/image.sh builds (or reuses)."""
    return os.environ.get("BASE_IMAGE", "localhost/visitroom-base:bookworm")


def podman(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def limits() -> tuple[int, int]:
    """nofile (our hard limit) and nproc for containers: the runtime may not raise
    them past ours, and podman's defaults (over a million) are refused here."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1], 4096


def run_flags() -> list[str]:
    """How containers run on these machines: crun refuses the kernel's hybrid
    cgroups (even with --cgroups=disabled), so runc with cgroupfs, and limits
    the runtime is allowed to set."""
    files, processes = limits()
    return [
        "--runtime", "runc", "--cgroup-manager", "cgroupfs",
        "--ulimit", f"nofile={files}:{files}", "--ulimit", f"nproc={processes}:{processes}",
    ]  # fmt: skip


def containers_conf(directory: Path) -> Path:
    """The same as run_flags for `podman kube play` (CONTAINERS_CONF)."""
    files, processes = limits()
    path = directory / "containers.conf"
    path.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={files}:{files}", "nproc={processes}:{processes}"]\n'
        '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
    )
    return path


@pytest.fixture(scope="session")
def image() -> str:
    """Built once per test session; the Debian base is reused if it exists."""
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "scripts/image.sh"],
        cwd=ROOT,
        env={**os.environ, "IMAGE": IMAGE},
        capture_output=True,
        text=True,
        timeout=1400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"scripts/image.sh: {time.monotonic() - started:.0f} s")
    return IMAGE
