"""Real-browser test support: one `visitroom serve` process, one headless Chromium
with fake camera and microphone, pages that record what they request, and a
parent page on a second origin for embedding tests. Everything is on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import shutil
import ssl
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    Playwright,
    Request,
    sync_playwright,
)

from tests.conftest import API_KEY, API_SECRET, admin_token, token
from tests.loop_thread import LoopThread
from tests.servers import ROOT, ServerProcess, free_port

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
TIMEZONE = "America/New_York"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # 127.0.0.2: a second loopback site (the OIDC tests' identity provider)
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE 127.0.0.2",
]
REJECTED_TEXT = (
    "The host did not grant you access. If you were invited to this room, "
    "please contact the person who invited you."
)

# A parent page on another origin that frames /embed and records what it is told.
PARENT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Parent</title><link rel="icon" href="data:,"></head>
<body>
<iframe id="visit" allow="camera; microphone; display-capture" width="900" height="700"></iframe>
<script>
  const params = new URLSearchParams(location.search);
  const target = params.get("src");
  const visitOrigin = new URL(target).origin;
  window.events = [];
  window.join = null;
  window.addEventListener("message", (event) => {
    if (event.origin !== visitOrigin || event.data?.source !== "visitroom") return;
    window.events.push(event.data);
    if (event.data.type === "ready" && window.join) {
      document.getElementById("visit").contentWindow.postMessage(
        {type: "visitroom:join", ...window.join}, visitOrigin);
    }
  });
  window.start = (join) => {
    window.join = join;
    document.getElementById("visit").src = target;
  };
</script>
</body></html>
"""


class ParentSite:
    """A static site on its own port (so its own origin) serving the parent page."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="vr-parent-"))
        (self.root / "parent.html").write_text(PARENT_PAGE)
        handler = _quiet_handler(self.root)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        shutil.rmtree(self.root, ignore_errors=True)


def _quiet_handler(root: Path) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@dataclass
class WebServer:
    """The visitroom server under test and the helpers tests need around it."""

    process: ServerProcess
    parent: ParentSite

    @property
    def url(self) -> str:
        return self.process.url

    def schedule(
        self, room_id: str | None = None, *, starts_in: timedelta = timedelta(minutes=-5),
        minutes: int = 60,
    ) -> str:  # fmt: skip
        """Create a scheduled room through REST; returns its id."""
        room_id = room_id or new_room_id()
        start = datetime.now(UTC) + starts_in
        body = {
            "room_id": room_id,
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(minutes=minutes)).isoformat(),
        }
        status, _ = self.rest("POST", "/v1/rooms", body)
        assert status == 201
        return room_id

    def rest(
        self, method: str, path: str, body: dict[str, Any] | None = None, tok: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {tok or admin_token()}",
                "Content-Type": "application/json",
            },
        )
        try:
            # a test server's https (a throwaway certificate) is not verified
            https = self.url.startswith("https")
            unverified = ssl._create_unverified_context() if https else None
            with urllib.request.urlopen(request, timeout=10, context=unverified) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def host_url(self, room_id: str, identity: str = "dr-smith", name: str = "Dr Smith") -> str:
        return f"{self.url}/host/{room_id}#token={token(room_id, identity, 'host', name)}"


class TcpProxy:
    """A TCP relay in front of the server whose connections the test can cut at once,
    like a network drop (pages loaded through it use it for their WebSocket too)."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self._loop = LoopThread()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = self._loop.run(asyncio.start_server(self._accept, "127.0.0.1", self.port))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers |= {writer, up_writer}
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except OSError:
            pass
        finally:  # also when `stop` cancels it halfway
            for each in (writer, up_writer):
                if each is not None:
                    each.transport.abort()
                    self._writers.discard(each)

    def drop_all(self) -> None:
        """Reset every relayed connection (both sides see the connection die)."""

        async def drop() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.run(drop(), 10.0)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        self._loop.run(close(), 10.0)
        self._loop.stop()  # cancels the relayed connections (`_accept`'s finally)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()


def new_room_id() -> str:
    return "t-" + uuid.uuid4().hex[:10]


@contextlib.contextmanager
def web_server(
    tmp: Path, extra_env: dict[str, str | None] | None = None, host: str = "127.0.0.1"
) -> Iterator[WebServer]:
    parent = ParentSite()
    parent.start()
    env: dict[str, str | None] = {
        "VISITROOM_API_KEY": API_KEY,
        "VISITROOM_API_SECRET": API_SECRET,
        "VISITROOM_KNOCK_RATE_LIMIT": "0",
        "VISITROOM_ALLOWED_ORIGINS": parent.origin,
        "VISITROOM_PUBLIC_BASE_URL": None,
        "VISITROOM_REDIS_URL": None,
        **(extra_env or {}),
    }
    process = ServerProcess(tmp / "data", env, host=host)
    in_thread(process.start)
    try:
        yield WebServer(process, parent)
    finally:
        in_thread(process.stop)
        parent.stop()


def in_thread(coroutine_function: Callable[[], Awaitable[Any]]) -> None:
    """Run a coroutine on a fresh loop in its own thread: sync Playwright owns this one."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_call(coroutine_function))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


async def _call(coroutine_function: Callable[[], Awaitable[Any]]) -> None:
    await coroutine_function()


@contextlib.contextmanager
def chromium(tmp: Path) -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        context = launch(playwright, tmp / "chromium-profile")
        try:
            yield context
        finally:
            context.close()


def launch(
    playwright: Playwright, profile: Path, executable: Path | str = CHROMIUM, *extra_args: str
) -> BrowserContext:
    """One headless Chromium with fake devices (`executable` may be a lab's wrapper)."""
    context = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(executable),
        headless=True,
        args=[*CHROMIUM_ARGS, *extra_args],
        viewport={"width": 1280, "height": 800},
        timezone_id=TIMEZONE,
        locale="en-US",
    )
    context.set_default_timeout(15000)
    return context


@dataclass
class Pages:
    """Opens pages for one test and checks, at the end, what they did."""

    context: BrowserContext
    server: WebServer
    opened: list[Page] = field(default_factory=list)
    also_allowed: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def new(self, label: str) -> Page:
        page = self.context.new_page()
        self.watch(page, label)
        return page

    def watch(self, page: Page, label: str) -> None:
        self.opened.append(page)
        page.on("request", lambda r: self._request(r))
        page.on("console", lambda m: self._console(label, m))
        page.on("pageerror", lambda e: self.errors.append(f"{label}: {e}"))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _console(self, label: str, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{label}: {message.text}")

    def close(self) -> None:
        for page in self.opened:
            with contextlib.suppress(Exception):
                page.close()

    def foreign_requests(self) -> list[str]:
        """Requests that left the server's origin (the parent test site is allowed)."""
        own = self.server.url.replace("http://", "")
        allowed = (f"http://{own}/", f"ws://{own}/", f"{self.server.parent.origin}/")
        extra = tuple(f"{origin}/" for origin in self.also_allowed)
        extra += tuple(f"ws://{origin.removeprefix('http://')}/" for origin in self.also_allowed)
        return [u for u in self.requests if not u.startswith(allowed + extra)]


def snap(page: Page, name: str, *, full_page: bool = False) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def guest_precall(page: Page, url: str, name: str | None) -> None:
    """Open a guest page, type the name and skip the test (the pre-call test has its own)."""
    page.goto(url)
    if name is not None:
        page.get_by_test_id("input-name").fill(name)
    page.get_by_test_id("btn-skip-test").click()


def knock(page: Page, server: WebServer, room_id: str, name: str) -> None:
    guest_precall(page, f"{server.url}/r/{room_id}", name)
    page.get_by_test_id("btn-join").click()
    page.get_by_test_id("screen-waiting").wait_for()


def token_sign_in(dash: Page, value: str) -> None:
    """The dashboard's sign-in with a pasted API token (the integrators' form)."""
    dash.get_by_test_id("token-signin-toggle").click()
    dash.get_by_test_id("admin-token-input").fill(value)
    dash.get_by_test_id("btn-token-signin").click()


def host_joins(page: Page, server: WebServer, room_id: str, **who: str) -> None:
    page.goto(server.host_url(room_id, **who))
    page.get_by_test_id("btn-skip-test").click()
    page.get_by_test_id("btn-join").click()
    page.get_by_test_id("screen-room").wait_for()


# Fixtures for the browser test modules (registered in tests/conftest.py): one real server
# and one Chromium per module; every test's pages are checked for script errors, dialogs
# (a name or message run as code) and requests that left the server's origin.


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    with web_server(tmp_path_factory.mktemp("web")) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with chromium(tmp_path_factory.mktemp("chromium")) as context:
        yield context


@pytest.fixture
def pages(browser: BrowserContext, site: WebServer) -> Iterator[Pages]:
    opened = Pages(browser, site)
    yield opened
    opened.close()
    assert opened.dialogs == [], "a name or message was run as code"
    assert opened.errors == []
    assert opened.foreign_requests() == []
