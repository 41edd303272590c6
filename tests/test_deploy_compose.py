"""deploy/compose.yaml and deploy/pod.yaml hold together: two nodes behind
deploy/nginx/visitroom.conf's upstream, sharing Redis, each with its own node id,
media port and data volume; coturn's ports are the ones the TURN URLs name; every
VISITROOM_* name in them is a setting the server reads. (Static: the public images
are not reachable here; tests/test_deploy_pod.py runs the pod.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.test_docs_settings import read_by_code

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def nodes() -> list[dict[str, str]]:
    services = compose()["services"]
    return [services[name]["environment"] for name in ("node1", "node2")]


def env_example() -> dict[str, str]:
    lines = (DEPLOY / "visitroom.env.example").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return dict(pairs)


def test_services_run_on_the_host_network() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "node1", "node2", "coturn", "nginx"}
    assert {s["network_mode"] for s in services.values()} == {"host"}
    assert services["node1"]["image"] == "${IMAGE:-localhost/visitroom:latest}"


def test_nginx_upstream_is_the_two_nodes() -> None:
    conf = (DEPLOY / "nginx" / "visitroom.conf").read_text()
    upstream = re.search(r"upstream visitroom \{(.*?)\}", conf, re.DOTALL)
    assert upstream is not None
    servers = re.findall(r"server (127\.0\.0\.1:\d+);", upstream.group(1))
    assert servers == [f"{n['VISITROOM_HOST']}:{n['VISITROOM_PORT']}" for n in nodes()]
    for node in nodes():
        assert node["VISITROOM_NODE_URL"] == f"http://127.0.0.1:{node['VISITROOM_PORT']}"
        assert node["VISITROOM_TRUSTED_PROXIES"] == "127.0.0.1"


def test_nodes_share_redis_but_not_ids_ports_or_data() -> None:
    services = compose()["services"]
    assert len({n["VISITROOM_REDIS_URL"] for n in nodes()}) == 1
    assert "6379" in nodes()[0]["VISITROOM_REDIS_URL"]
    assert "--port 6379" in services["redis"]["command"]
    for key in ("VISITROOM_NODE_ID", "VISITROOM_PORT", "VISITROOM_RTC_UDP_PORT"):
        assert len({n[key] for n in nodes()}) == 2, key
    volumes = [services[name]["volumes"][0] for name in ("node1", "node2")]
    assert len(set(volumes)) == 2
    assert all(v.endswith(":/var/lib/visitroom/data") for v in volumes)
    assert set(compose()["volumes"]) == {v.split(":")[0] for v in volumes}


def test_turn_urls_name_coturns_ports_and_nginx_keeps_443() -> None:
    conf = (DEPLOY / "coturn" / "turnserver.conf").read_text()
    settings = dict(re.findall(r"^([\w-]+)=(\S+)", conf, re.MULTILINE))
    assert "use-auth-secret" in conf.split()
    assert settings["tls-listening-port"] != "443"  # nginx listens there on the same host
    urls = env_example()["VISITROOM_TURN_URLS"].split(",")
    ports = {re.search(r":(\d+)\?", url).group(1) for url in urls}  # type: ignore[union-attr]
    assert ports == {settings["listening-port"], settings["tls-listening-port"]}


def test_mounted_files_exist_and_every_setting_is_read_by_the_server() -> None:
    services = compose()["services"]
    for name in ("coturn", "nginx"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).is_file(), volume
    named = set(env_example()) | {key for node in nodes() for key in node}
    assert named <= read_by_code()


def test_the_pod_runs_the_same_services_as_compose() -> None:
    pod = yaml.safe_load((DEPLOY / "pod.yaml").read_text())
    assert pod["spec"]["hostNetwork"] is True
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(containers) == set(compose()["services"])
    for name, node in zip(("node1", "node2"), nodes(), strict=True):
        env = {item["name"]: item["value"] for item in containers[name]["env"]}
        assert env == {k: v for k, v in node.items() if k != "VISITROOM_REDIS_URL"}
    settings = yaml.safe_load((DEPLOY / "visitroom-settings.example.yaml").read_text())["data"]
    assert set(env_example()) <= set(settings)
    assert "127.0.0.1:6379" in settings["VISITROOM_REDIS_URL"]
    assert {k for k in settings if k.startswith("VISITROOM_")} <= read_by_code()
