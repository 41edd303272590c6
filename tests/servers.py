"""Real `visitroom serve` processes for tests that need a restart, a signal or two nodes."""

from __future__ import annotations

import asyncio
import datetime
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
METRICS_TOKEN = "test-metrics-" + "m" * 32  # every server process serves /metrics with it
METRICS_HEADERS = {"Authorization": f"Bearer {METRICS_TOKEN}"}


# Below Linux's ephemeral range (32768-60999): a port the kernel picks (bind to 0) can be
# taken by any outgoing connection between our pick and the server's own bind ("address
# already in use" on a busy machine); one from here is only taken by another explicit bind.
# Under pytest-xdist each worker picks from its own slice of that range, so two workers
# cannot hand out the same port between a pick and the server's bind.
_ALL_PORTS = range(20_000, 32_768)
_given: set[int] = set()


def worker_ports(all_ports: range = _ALL_PORTS, environ: Mapping[str, str] = os.environ) -> range:
    """This xdist worker's slice of `all_ports` (all of them outside xdist)."""
    worker = environ.get("PYTEST_XDIST_WORKER", "")
    count = int(environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return all_ports
    size = len(all_ports) // count
    start = all_ports.start + int(worker.removeprefix("gw")) * size
    return range(start, start + size)


_PORTS = worker_ports()
# ports of `visitroom serve` and nginx subprocesses: only test clients connect to them from here
SERVER_PORTS: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody holds and this process has not handed out."""
    for _ in range(500):
        port = random.choice(_PORTS)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


class ServerProcess:
    """`python -m signalling serve` on 127.0.0.1 with its own data dir and log file."""

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str | None] | None = None,
        *args: str,
        host: str = "127.0.0.1",
    ) -> None:
        """`env` overrides the environment; a None value removes the variable. `host` is
        the address it listens on (a lab test's veth address, never a machine's own)."""
        self.data_dir = data_dir
        self.host = host
        self.port = free_port()
        SERVER_PORTS.add(self.port)
        defaults = {"VISITROOM_ICE_HOSTS": "127.0.0.1", "VISITROOM_METRICS_TOKEN": METRICS_TOKEN}
        merged = {**os.environ, **defaults, **(env or {})}
        self.env = {k: v for k, v in merged.items() if v is not None}
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        scheme = "https" if "--tls-cert" in self.args else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "signalling", "serve",
            "--host", self.host, "--port", str(self.port),
            "--data-dir", str(self.data_dir), *self.args,
        ]  # fmt: skip

    async def start(self, timeout: float = 60.0) -> None:
        """Start and wait until healthy: 60 s, room for a loaded machine (two xdist
        workers and whatever else runs); a server that does not get there is killed,
        not left running past its test (its Popen's ResourceWarning failed the next)."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)  # the server makes data_dir
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command(), cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            await self.wait_healthy(timeout)
        except BaseException:
            self.kill()
            raise

    async def wait_healthy(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.output()}")
                try:
                    async with (
                        aiohttp.ClientSession() as session,
                        session.get(f"{self.url}/healthz", ssl=False) as response,
                    ):
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 35.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        code = await asyncio.to_thread(self.proc.wait, timeout)
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def room_audit(
    session: aiohttp.ClientSession, server: ServerProcess, room: str, bearer: str
) -> list[dict[str, Any]]:
    """A room's audit entries, read through a real server's REST API."""
    headers = {"Authorization": f"Bearer {bearer}"}
    async with session.get(f"{server.url}/v1/rooms/{room}/audit", headers=headers) as response:
        assert response.status == 200
        entries: list[dict[str, Any]] = (await response.json())["entries"]
        return entries


def run_cli(
    *args: str, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m signalling ARGS...` to completion; a None value in `env` removes it."""
    merged = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "signalling", *args],
        cwd=ROOT,
        env={k: v for k, v in merged.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=30,
    )


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway EC certificate for 127.0.0.1: (cert.pem, key.pem) in `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def wait_listening(
    proc: subprocess.Popen[bytes], address: str, port: int, timeout: float, name: str,
    output: Callable[[], str],
) -> None:  # fmt: skip
    """Until a program the test started takes TCP connections on address:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {output()}")
        try:
            socket.create_connection((address, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen in {timeout} s: {output()}")


def terminate(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s, for a program the test started."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
