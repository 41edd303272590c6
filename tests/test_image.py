"""The container image as operators build and run it: scripts/image.sh builds a
base from Debian packages and the Dockerfile on it with podman; the container
(host network, a data volume, the settings in its environment) is ready, serves a
visit over WebSocket, runs as uid 10001, holds no compiler and runs the compiled
per-packet paths its build stage made."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import API_KEY, API_SECRET, host_admits_guest
from tests.image_support import UID, podman, run_flags
from tests.servers import ROOT, free_port

# a fresh build takes minutes (base from Debian packages + the venv from PyPI)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

DATA = "/var/lib/visitroom/data"
MAX_IMAGE_BYTES = 600_000_000  # measured 386 MB; a compiler or a cache would show
COMPILER = re.compile(r"^([\w.-]+-)?(gcc|g\+\+|cc|c\+\+|clang|clang\+\+|tcc)(-[\d.]+)?$")


@dataclass
class Container:
    name: str
    url: str
    data: Path


@pytest.fixture(scope="module")
def container(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    data = tmp_path_factory.mktemp("image") / "data"
    data.mkdir(mode=0o700)
    os.chown(data, UID, UID)  # the volume belongs to the image's user, as in operations.md
    port = free_port()
    name = f"visitroom-test-{port}"
    settings = {
        "VISITROOM_HOST": "127.0.0.1",
        "VISITROOM_PORT": str(port),
        "VISITROOM_ICE_HOSTS": "127.0.0.1",
        "VISITROOM_API_KEY": API_KEY,
        "VISITROOM_API_SECRET": API_SECRET,
    }
    # `-e NAME` takes the value from podman's environment: no secret on a command line
    env_flags = [flag for key in settings for flag in ("-e", key)]
    podman(
        "run", "--detach", "--name", name, "--network", "host", *run_flags(),
        "-v", f"{data}:{DATA}", *env_flags, image,
        env={**os.environ, **settings},
    )  # fmt: skip
    try:
        yield Container(name, f"http://127.0.0.1:{port}", data)
    finally:
        subprocess.run(["podman", "rm", "--force", "--time", "5", name], capture_output=True)


async def wait_ready(container: Container, timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            state = podman("inspect", "--format", "{{.State.Status}}", container.name).strip()
            assert state == "running", podman("logs", container.name)
            try:
                async with session.get(f"{container.url}/readyz") as response:
                    if response.status == 200:
                        body: dict[str, str] = await response.json()
                        return body
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, podman("logs", container.name)
            await asyncio.sleep(0.25)


async def test_the_container_is_ready_and_serves_a_visit(container: Container) -> None:
    assert await wait_ready(container) == {"status": "ready"}
    ws_url = container.url.replace("http", "ws", 1) + "/v1/rooms/visit-1/ws"
    async with aiohttp.ClientSession() as session:
        host, guest, roster = await host_admits_guest(session, ws_url, name="Pat")
        assert sorted(p["name"] for p in roster) == ["Pat", "dr-smith"]
        await guest.close()
        await host.close()
    # the visit's records are on the volume, written by the image's user
    written = [path for path in container.data.rglob("*") if path.is_file()]
    assert written, "nothing written to the data volume"
    assert {path.stat().st_uid for path in written} == {UID}


async def test_the_container_runs_as_non_root_without_a_compiler(container: Container) -> None:
    await wait_ready(container)
    status = podman("exec", container.name, "cat", "/proc/1/status")
    uids = re.search(r"^Uid:\s+(.*)$", status, re.MULTILINE)
    assert uids is not None and set(uids.group(1).split()) == {str(UID)}
    listing = podman(
        "exec", container.name, "sh", "-c",
        'echo "$PATH" | tr : "\\n" | while read d; do ls -1 "$d" 2>/dev/null; done; ls -1 /usr/bin',
    ).split()  # fmt: skip
    assert [name for name in listing if COMPILER.match(name)] == []
    assert "python3" in listing  # the listing itself worked


async def test_the_container_runs_the_compiled_per_packet_paths(container: Container) -> None:
    """The build stage compiles sfu/native (it has a compiler; the runtime has none):
    every module loads in the container, none refused as stale or missing."""
    await wait_ready(container)
    script = (
        "import pathlib, sfu.native as n; "
        "here = pathlib.Path(n.__file__).parent; "
        "names = sorted(p.name.split('.')[0] for p in here.glob('_*.so')); "
        "print(' '.join(f'{m}={n.load(m) is not None}' for m in names))"
    )
    loaded = podman("exec", container.name, "python3", "-c", script).split()
    expected = sorted(p.stem for p in (ROOT / "sfu" / "native").glob("_*.c"))
    assert loaded == [f"{name}=True" for name in expected]


async def test_the_image_s_health_check_passes_when_run(image: str, container: Container) -> None:
    """Without systemd podman schedules no health checks (docs/operations.md), so the
    orchestrator runs them: the image's own HEALTHCHECK command must then pass."""
    await wait_ready(container)
    inspect = podman("image", "inspect", "--format", "{{json .HealthCheck}}", image)
    assert "health" in inspect
    result = subprocess.run(
        ["podman", "healthcheck", "run", container.name], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_size_is_recorded(
    image: str, record_property: Callable[[str, object], None]
) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image))
    record_property("image_bytes", size)
    print(f"{image}: {size / 1e6:.0f} MB")
    assert size < MAX_IMAGE_BYTES
    user = podman("image", "inspect", "--format", "{{.Config.User}}", image).strip()
    assert user == "visitroom"
