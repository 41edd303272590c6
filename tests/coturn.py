"""A real coturn (`turnserver`, Debian package coturn) for tests: started on free
ports of one address with a throwaway config, TURN REST API credentials
(`use-auth-secret`), TURN over UDP, TCP and TLS (a throwaway certificate)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.servers import free_port, self_signed_cert, terminate, wait_listening

TURNSERVER = "/usr/bin/turnserver"
SECRET = "coturn-test-secret-" + "s" * 32  # at least 32 bytes, as the server requires


class Coturn:
    def __init__(self, directory: Path, address: str = "127.0.0.1") -> None:
        self.directory = directory
        self.address = address
        self.port = free_port()
        self.tls_port = free_port()
        self.log = directory / "turnserver.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def urls(self) -> list[str]:
        """What VISITROOM_TURN_URLS lists: UDP, TCP and TLS."""
        a = self.address
        return [
            f"turn:{a}:{self.port}?transport=udp",
            f"turn:{a}:{self.port}?transport=tcp",
            f"turns:{a}:{self.tls_port}?transport=tcp",
        ]

    def config(self) -> str:
        cert, key = self_signed_cert(self.directory)
        relay_low = free_port()
        return "\n".join(
            [
                f"listening-ip={self.address}",
                f"relay-ip={self.address}",
                f"listening-port={self.port}",
                f"tls-listening-port={self.tls_port}",
                "alt-listening-port=0",
                "alt-tls-listening-port=0",
                f"min-port={relay_low}",
                f"max-port={relay_low + 200}",
                "use-auth-secret",
                f"static-auth-secret={SECRET}",
                "realm=visitroom.test",
                f"cert={cert}",
                f"pkey={key}",
                "fingerprint",
                "no-cli",
                "no-dtls",
                "no-multicast-peers",
                "allow-loopback-peers",
                "no-software-attribute",
                f"pidfile={self.directory / 'turnserver.pid'}",
                f"log-file={self.log}",
                "simple-log",
                "verbose",
            ]
        )

    def start(self, timeout: float = 15.0) -> None:
        if shutil.which(TURNSERVER) is None:
            raise RuntimeError("coturn is not installed (apt-get install coturn)")
        conf = self.directory / "turnserver.conf"
        conf.write_text(self.config() + "\n")
        self.proc = subprocess.Popen(
            [TURNSERVER, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.proc, self.address, self.port, timeout, "turnserver", self.output)

    def output(self) -> str:
        logs = sorted(self.directory.glob("turnserver*.log"))
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in logs)

    def stop(self) -> None:
        terminate(self.proc)
