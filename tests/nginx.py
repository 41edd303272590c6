"""A real nginx (Debian package) running deploy/nginx/visitroom.conf for tests:
the same file, with test ports, the test's nodes, a throwaway certificate, and
its upstream connections made from 127.0.0.5 so the nodes can tell the proxy
(a trusted proxy) from the browser (127.0.0.1)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.servers import (
    ROOT,
    SERVER_PORTS,
    free_port,
    self_signed_cert,
    terminate,
    wait_listening,
)

NGINX = "/usr/sbin/nginx"
DEPLOY_CONF = ROOT / "deploy" / "nginx" / "visitroom.conf"
PROXY_ADDRESS = "127.0.0.5"  # where nginx connects to the nodes from (all of 127/8 is local)

MAIN_CONF = """\
user root;
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/visitroom.conf;
}}
"""


def render(node_ports: list[int], https_port: int, http_port: int, directory: Path) -> str:
    """deploy/nginx/visitroom.conf with the test's nodes, ports and certificate."""
    text = DEPLOY_CONF.read_text()
    cert, key = self_signed_cert(directory)
    nodes = "".join(f"    server 127.0.0.1:{port};\n" for port in node_ports)
    text, found = re.subn(r"(?m)^    server 127\.0\.0\.1:\d+;.*\n", "", text)
    assert found, "the deploy file's upstream lost its node lines"
    text = text.replace("    keepalive 32;", nodes + "    keepalive 32;", 1)
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "/etc/letsencrypt/live/visits.example.org/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/visits.example.org/privkey.pem": str(key),
        "server_name visits.example.org;": "server_name 127.0.0.1;",
        "proxy_pass http://visitroom;": (
            f"proxy_pass http://visitroom;\n        proxy_bind {PROXY_ADDRESS};"
        ),
    }
    for old, new in replacements.items():
        assert old in text, f"the deploy file no longer has {old!r}"
        text = text.replace(old, new)
    return text


class Nginx:
    def __init__(self, directory: Path, node_ports: list[int]) -> None:
        self.directory = directory
        self.node_ports = node_ports
        self.https_port = free_port()
        self.http_port = free_port()
        SERVER_PORTS.update((self.https_port, self.http_port))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def start(self, timeout: float = 15.0) -> None:
        if shutil.which(NGINX) is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        d = self.directory
        (d / "visitroom.conf").write_text(
            render(self.node_ports, self.https_port, self.http_port, d)
        )
        (d / "nginx.conf").write_text(MAIN_CONF.format(dir=d))
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(d), "-c", str(d / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.proc, "127.0.0.1", self.https_port, timeout, "nginx", self.output)

    def output(self) -> str:
        log = self.directory / "error.log"
        return log.read_text(errors="replace")[-4000:] if log.exists() else ""

    def stop(self) -> None:
        terminate(self.proc)
