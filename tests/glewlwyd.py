"""A real glewlwyd OpenID Provider on loopback and a free port, started and stopped by tests.

Debian's `glewlwyd` package (2.7.5) is the provider: this module writes a
throwaway configuration and an SQLite database (the package's schema), starts
`/usr/bin/glewlwyd` on loopback, signs in as its built-in administrator and,
through the admin API, sets up:

- the database user module, with two extra user properties, `practice` and
  `visitroom_role`, and a user carrying them;
- the password scheme (glewlwyd's built-in one) as what the `openid` scope needs;
- an OIDC plugin instance named `oidc` signing ID tokens with an RS256 key
  generated here, whose ID tokens carry `practice`, `visitroom_role`, `email`, `name`;
- a confidential client (client_secret_basic) with the relying party's redirect URI,
  its consent to `openid` already given (as an administrator would for a staff app).

Nothing leaves loopback; stop() terminates the process it started.
"""

from __future__ import annotations

import http.cookiejar
import json
import secrets
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.servers import free_port

BINARY = Path("/usr/bin/glewlwyd")
MODULES = Path("/usr/lib/glewlwyd")
WEBAPP = Path("/usr/share/glewlwyd/webapp")
SCHEMA = Path("/usr/share/dbconfig-common/data/glewlwyd/install/sqlite3")
WEBAPP_CONFIG = Path("/etc/glewlwyd/config-2.7.json")  # a file, or (Debian 2.7.5-3) a directory
ADMIN = ("admin", "password")  # the schema's built-in administrator
PLUGIN = "oidc"
EXTRA_PROPERTIES = ("practice", "visitroom_role")
MIME = {
    ".html": "text/html", ".css": "text/css", ".js": "application/javascript",
    ".json": "application/json", ".png": "image/png", ".ico": "image/x-icon",
    ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".svg": "image/svg+xml",
}  # fmt: skip


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str
    redirect_uri: str


@dataclass(frozen=True)
class Person:
    username: str
    password: str
    email: str
    name: str
    claims: dict[str, str]  # extra user properties: practice, visitroom_role


def installed() -> bool:
    return BINARY.exists() and SCHEMA.exists() and (MODULES / "plugin").is_dir()


def _webapp_config() -> Path:
    inner = WEBAPP_CONFIG / "config.json"
    return inner if WEBAPP_CONFIG.is_dir() else WEBAPP_CONFIG


def _rs256_jwks(kid: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key))
    jwk.update(kid=kid, alg="RS256", use="sig")
    return json.dumps({"keys": [jwk]})


class Glewlwyd:
    """One glewlwyd process with its own config dir, SQLite database and webapp copy."""

    def __init__(self, directory: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        """`host`: the loopback address it listens on and names in its URLs (127.0.0.2
        makes it another site than a relying party on 127.0.0.1, as a real provider is)."""
        self.directory = directory
        self.port = port or free_port()
        self.host = host
        self.proc: subprocess.Popen[bytes] | None = None
        self._jar = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self._jar))

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def issuer(self) -> str:
        """The plugin's `iss`, which is also where its discovery document lives."""
        return f"{self.base_url}/api/{PLUGIN}"

    @property
    def log_file(self) -> Path:
        return self.directory / "glewlwyd.log"

    def output(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    # --- process ------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        if not installed():
            raise RuntimeError("glewlwyd is not installed (scripts/test.sh's apt line installs it)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_database()
        self._write_webapp()
        config = self._write_config()
        command = [str(BINARY), "--config-file", str(config)]
        self.proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory
        )
        try:
            self._wait_listening(timeout)
            self._sign_in_admin()
        except BaseException:
            self.stop()  # never leave a provider running behind a failed start
            raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"glewlwyd exited at start:\n{self.output()[-3000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"glewlwyd did not start listening:\n{self.output()[-3000:]}")

    # --- files --------------------------------------------------------------------------

    def _write_database(self) -> None:
        path = self.directory / "glewlwyd.db"
        with sqlite3.connect(path) as db:
            db.executescript(SCHEMA.read_text())
            # the database user module keeps the two extra properties the ID token carries
            row = db.execute("SELECT gumi_parameters FROM g_user_module_instance").fetchone()
            params = json.loads(row[0])
            for name in EXTRA_PROPERTIES:
                params["data-format"][name] = {
                    "multiple": False, "read": True, "write": True,
                    "profile-read": True, "profile-write": False,
                }  # fmt: skip
            db.execute(
                "UPDATE g_user_module_instance SET gumi_parameters = ?", (json.dumps(params),)
            )
            # signing in with a password is what the openid scope asks for
            db.execute("UPDATE g_scope SET gs_password_required = 1 WHERE gs_name = 'openid'")
        db.close()

    def _write_webapp(self) -> None:
        """A copy of the packaged webapp (glewlwyd serves no file whose real path lies
        outside its static_files_path, so symlinks will not do), and its config.json."""
        webapp = self.directory / "webapp"
        shutil.copytree(WEBAPP, webapp, ignore=shutil.ignore_patterns("config.json"))
        shutil.copyfile(_webapp_config(), webapp / "config.json")

    def _write_config(self) -> Path:
        mimes = ",\n".join(
            f'  {{ extension = "{ext}"\n    mime_type = "{mime}" }}' for ext, mime in MIME.items()
        )
        text = f"""
port={self.port}
bind_address="{self.host}"
external_url="{self.base_url}"
login_url="login.html"
static_files_path="{self.directory / "webapp"}/"
api_prefix="api"
allow_origin="*"
log_mode="file"
log_level="INFO"
log_file="{self.log_file}"
cookie_secure=0
cookie_same_site="lax"
session_expiration=3600
session_key="GLEWLWYD2_SESSION_ID"
admin_session_authentication="cookie"
profile_session_authentication="cookie"
allow_multiple_user_per_session=true
login_api_enabled=true
add_x_frame_option_header_deny=true
max_post_size=16778240
admin_scope="g_admin"
profile_scope="g_profile"
user_module_path="{MODULES / "user"}"
client_module_path="{MODULES / "client"}"
user_auth_scheme_module_path="{MODULES / "scheme"}"
plugin_module_path="{MODULES / "plugin"}"
hash_algorithm="SHA512"
database = {{
  type = "sqlite3"
  path = "{self.directory / "glewlwyd.db"}"
}};
static_files_mime_types = (
{mimes}
);
"""
        path = self.directory / "glewlwyd.conf"
        path.write_text(text)
        return path

    # --- admin API ----------------------------------------------------------------------

    def api(self, method: str, path: str, body: object | None = None) -> Any:
        """A call to glewlwyd's API as the signed-in administrator; the decoded JSON or None."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}/api{path}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with self._opener.open(request, timeout=10) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise RuntimeError(f"glewlwyd {method} {path}: {exc.code} {detail}") from None
        return json.loads(raw) if raw.strip() else None

    def _sign_in_admin(self) -> None:
        username, password = ADMIN
        self.api("POST", "/auth/", {"username": username, "password": password})

    def add_oidc_plugin(self, kid: str = "visitroom-test") -> None:
        claims = [
            {"name": name, "user-property": name, "type": "string", "mandatory": True}
            for name in EXTRA_PROPERTIES
        ]
        parameters = {
            "iss": self.issuer,
            "jwks-private": _rs256_jwks(kid),
            "default-kid": kid,
            "jwks-show": True,
            "access-token-duration": 3600,
            "refresh-token-duration": 1209600,
            "code-duration": 600,
            "refresh-token-rolling": False,
            "allow-non-oidc": False,
            "auth-type-code-enabled": True,
            "auth-type-token-enabled": False,
            "auth-type-id-token-enabled": False,
            "auth-type-password-enabled": False,
            "auth-type-client-enabled": False,
            "auth-type-refresh-enabled": False,
            "pkce-allowed": True,
            "pkce-method-plain-allowed": False,
            "subject-type": "public",
            "name-claim": "mandatory",
            "email-claim": "mandatory",
            "claims": claims,
        }
        module = {"module": "oidc", "name": PLUGIN, "display_name": "Test IdP",
                  "enabled": True, "parameters": parameters}  # fmt: skip
        self.api("POST", "/mod/plugin/", module)

    def rotate_key(self, kid: str) -> None:
        """A new RS256 signing key (and kid) for the OIDC plugin, as a key rotation does."""
        module = self.api("GET", f"/mod/plugin/{PLUGIN}")
        module["parameters"].update({"jwks-private": _rs256_jwks(kid), "default-kid": kid})
        self.api("PUT", f"/mod/plugin/{PLUGIN}", module)
        self.api("PUT", f"/mod/plugin/{PLUGIN}/reset")  # the running instance takes the key

    def add_client(self, redirect_uri: str, client_id: str = "visitroom") -> Client:
        secret = secrets.token_urlsafe(24)
        body = {
            "client_id": client_id,
            "name": "visitroom",
            "confidential": True,
            "enabled": True,
            "password": secret,
            "redirect_uri": [redirect_uri],
            "authorization_type": ["code"],
            "token_endpoint_auth_method": ["client_secret_basic", "client_secret_post"],
            "scope": ["openid"],
        }
        self.api("POST", "/client/", body)
        return Client(client_id, secret, redirect_uri)

    def set_redirect_uri(self, client: Client, redirect_uri: str) -> Client:
        """Point the client at the relying party once its port is known."""
        body = self.api("GET", f"/client/{client.client_id}")
        body["redirect_uri"] = [redirect_uri]
        body.pop("source", None)
        self.api("PUT", f"/client/{client.client_id}", body)
        return Client(client.client_id, client.secret, redirect_uri)

    def add_user(self, person: Person, client: Client | None = None) -> None:
        body: dict[str, object] = {
            "username": person.username,
            "password": person.password,
            "name": person.name,
            "email": person.email,
            "enabled": True,
            "scope": ["openid"],
            **person.claims,
        }
        self.api("POST", "/user/", body)
        if client is not None:
            self._consent(person.username, client.client_id)

    def _consent(self, username: str, client_id: str) -> None:
        """The user's consent to `openid` for the client, as glewlwyd stores a granted one."""
        with sqlite3.connect(self.directory / "glewlwyd.db") as db:
            db.execute(
                "INSERT INTO g_client_user_scope"
                " (gcus_client_id, gcus_username, gs_id, gcus_enabled) VALUES"
                " (?, ?, (SELECT gs_id FROM g_scope WHERE gs_name = 'openid'), 1)",
                (client_id, username),
            )
        db.close()
