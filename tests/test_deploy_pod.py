"""deploy/pod.yaml run for real with `podman kube play`: two visitroom nodes from the
image scripts/image.sh builds, Redis, coturn and nginx (from an image of Debian's
packages: no registry is reachable here), on free ports with a throwaway
certificate. Both nodes are ready, nginx sends HSTS and redirects plain HTTP, and
a host admits guests over wss:// through nginx, which spreads them over the nodes."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import API_KEY, API_SECRET, Peer, token
from tests.image_support import UID, base_image, containers_conf, podman
from tests.servers import free_port, self_signed_cert

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SERVICES = "localhost/visitroom-services:pytest"
CONTAINERFILE = """\
FROM {base}
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
       redis-server coturn nginx \\
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default
"""
PUBLIC = {
    "docker.io/library/redis:7-bookworm",
    "docker.io/coturn/coturn:4.6",
    "docker.io/library/nginx:1.26",
}


@dataclass
class Pod:
    name: str
    ports: dict[str, int]
    turn_urls: list[str]


def rewrite_pod(name: str, ports: dict[str, int], files: Path, image: str) -> dict[str, Any]:
    """deploy/pod.yaml on this machine's free ports, files and images."""
    pod: dict[str, Any] = yaml.safe_load((DEPLOY / "pod.yaml").read_text())
    pod["metadata"]["name"] = name
    moved = {
        "8080": str(ports["node1"]), "8081": str(ports["node2"]),
        "40000": str(ports["rtc1"]), "40100": str(ports["rtc2"]),
    }  # fmt: skip
    for container in pod["spec"]["containers"]:
        image_name = container["image"]
        container["image"] = image if "visitroom" in image_name else SERVICES
        assert image_name in PUBLIC | {"localhost/visitroom:latest"}
        for item in container.get("env", []):
            for old, new in moved.items():
                item["value"] = item["value"].replace(old, new)
        if container["name"] == "redis":
            command = container["command"][2]
            assert "--port 6379" in command
            container["command"][2] = command.replace("6379", str(ports["redis"]))
    for volume in pod["spec"]["volumes"]:
        if "persistentVolumeClaim" in volume:
            volume["persistentVolumeClaim"]["claimName"] += f"-{name}"
        else:
            path = volume["hostPath"]["path"]
            volume["hostPath"]["path"] = str(
                files / path.removeprefix("/etc/").removeprefix("visitroom/")
            )
    return pod


def write_files(files: Path, ports: dict[str, int], turn_secret: str) -> None:
    """nginx's and coturn's files from deploy/, moved to free ports, and certificates."""
    nginx = (DEPLOY / "nginx" / "visitroom.conf").read_text()
    for old, new in (
        ("127.0.0.1:8080", f"127.0.0.1:{ports['node1']}"),
        ("127.0.0.1:8081", f"127.0.0.1:{ports['node2']}"),
        ("listen 80;", f"listen {ports['http']};"),
        ("listen 443 ssl", f"listen {ports['https']} ssl"),
    ):
        assert old in nginx
        nginx = nginx.replace(old, new)
    coturn = (DEPLOY / "coturn" / "turnserver.conf").read_text()
    for old, new in (
        ("listening-port=3478", f"listening-port={ports['turn']}"),
        ("tls-listening-port=5349", f"tls-listening-port={ports['turns']}"),
        ("# listening-ip=PRIVATE_IP", "listening-ip=127.0.0.1"),
        ("# static-auth-secret=THE_SAME_AS_VISITROOM_TURN_SECRET",
         f"static-auth-secret={turn_secret}"),
    ):  # fmt: skip
        assert old in coturn
        coturn = coturn.replace(old, new)
    (files / "nginx").mkdir(parents=True)
    (files / "nginx" / "visitroom.conf").write_text(nginx)
    (files / "coturn").mkdir()
    (files / "coturn" / "turnserver.conf").write_text(coturn)
    for host in ("visits.example.org", "turn.example.org"):
        live = files / "letsencrypt" / "live" / host
        live.mkdir(parents=True)
        cert, key = self_signed_cert(live)
        cert.rename(live / "fullchain.pem")
        key.rename(live / "privkey.pem")
        (live / "privkey.pem").chmod(0o644)  # coturn's image may run as nobody


def settings(ports: dict[str, int], turn_secret: str) -> dict[str, Any]:
    """deploy/visitroom-settings.example.yaml filled in."""
    configmap: dict[str, Any] = yaml.safe_load(
        (DEPLOY / "visitroom-settings.example.yaml").read_text()
    )
    password = secrets.token_hex(16)
    data = configmap["data"]
    turn = data["VISITROOM_TURN_URLS"]
    assert ":3478?" in turn and ":5349?" in turn
    data.update(
        VISITROOM_PUBLIC_BASE_URL=f"https://127.0.0.1:{ports['https']}",
        VISITROOM_API_KEY=API_KEY,
        VISITROOM_API_SECRET=API_SECRET,
        VISITROOM_CLUSTER_SECRET=secrets.token_hex(32),
        VISITROOM_TURN_SECRET=turn_secret,
        VISITROOM_TURN_URLS=turn.replace(
            "turn.example.org:3478", f"127.0.0.1:{ports['turn']}"
        ).replace("turn.example.org:5349", f"127.0.0.1:{ports['turns']}"),
        REDIS_PASSWORD=password,
        VISITROOM_REDIS_URL=data["VISITROOM_REDIS_URL"]
        .replace("THE_REDIS_PASSWORD", password)
        .replace("6379", str(ports["redis"])),
        VISITROOM_ICE_HOSTS="127.0.0.1",
    )
    del data["VISITROOM_ANNOUNCED_IP"]
    return configmap


@pytest.fixture(scope="module")
def services(image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """redis-server, coturn and nginx from Debian, on the base scripts/image.sh made."""
    context = tmp_path_factory.mktemp("services")
    (context / "Containerfile").write_text(CONTAINERFILE.format(base=base_image()))
    podman("build", "--isolation", "chroot", "-t", SERVICES, str(context), timeout=900)
    return SERVICES


@pytest.fixture(scope="module")
def pod(image: str, services: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    files = tmp_path_factory.mktemp("pod")
    names = ("http", "https", "node1", "node2", "redis", "turn", "turns", "rtc1", "rtc2")
    ports = {name: free_port() for name in names}
    name = f"visitroom-test-{ports['https']}"
    turn_secret = secrets.token_hex(32)
    write_files(files, ports, turn_secret)
    (files / "pod.yaml").write_text(yaml.safe_dump(rewrite_pod(name, ports, files, image)))
    configmap = settings(ports, turn_secret)
    (files / "settings.yaml").write_text(yaml.safe_dump(configmap))
    env = {**os.environ, "CONTAINERS_CONF": str(containers_conf(files))}
    try:
        podman(
            "kube", "play", "--configmap", str(files / "settings.yaml"), str(files / "pod.yaml"),
            env=env, timeout=300,
        )  # fmt: skip
        yield Pod(name, ports, configmap["data"]["VISITROOM_TURN_URLS"].split(","))
    finally:
        subprocess.run(
            ["podman", "kube", "down", str(files / "pod.yaml")], env=env, capture_output=True
        )
        for node in ("node1", "node2"):
            subprocess.run(
                ["podman", "volume", "rm", f"visitroom-{node}-data-{name}"], capture_output=True
            )


async def wait_ready(session: aiohttp.ClientSession, pod: Pod, url: str) -> dict[str, Any]:
    for _ in range(240):
        try:
            async with session.get(url, ssl=False) as response:
                if response.status == 200:
                    return dict(response.headers) | {"body": await response.json()}
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.25)
    logs = {c: podman("logs", f"{pod.name}-{c}") for c in ("node1", "node2", "nginx")}
    raise AssertionError(f"{url} not ready: {logs}")


async def test_the_clinic_group_pod_serves_visits_through_nginx(pod: Pod) -> None:
    base = f"https://127.0.0.1:{pod.ports['https']}"
    async with aiohttp.ClientSession() as session:
        for node in ("node1", "node2"):
            ready = await wait_ready(session, pod, f"http://127.0.0.1:{pod.ports[node]}/readyz")
            assert ready["body"] == {"status": "ready"}
        front = await wait_ready(session, pod, f"{base}/readyz")
        assert "max-age=" in front["Strict-Transport-Security"]
        plain = f"http://127.0.0.1:{pod.ports['http']}/r/visit-1"
        async with session.get(plain, allow_redirects=False) as response:
            assert response.status == 301
        ws_url = base.replace("https", "wss", 1) + "/v1/rooms/visit-1/ws"
        host = Peer(await session.ws_connect(ws_url, ssl=False))
        await host.send({"type": "hello", "token": token()})
        welcome = await host.next("welcome", timeout=10)
        urls = [url for server in welcome["ice_servers"] for url in server["urls"]]
        assert set(pod.turn_urls) <= set(urls)
        for n in range(3):  # nginx spreads them over both nodes
            guest = Peer(await session.ws_connect(ws_url, ssl=False))
            await guest.send({"type": "hello", "name": f"Pat {n}"})
            guest_id = (await guest.next("welcome", timeout=10))["participant_id"]
            await host.request({"type": "admit", "participant_ids": [guest_id]}, timeout=10)
            roster = (await guest.next("roster", timeout=10))["participants"]
            assert len(roster) == n + 2
            await guest.close()
        await host.close()
    for node in ("node1", "node2"):
        mode = podman(
            "exec", f"{pod.name}-{node}", "stat", "-c", "%u %a", "/var/lib/visitroom/data"
        )
        assert mode.split() == [str(UID), "700"]
