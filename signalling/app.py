"""The aiohttp application: wiring, background tasks and lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from typing import Protocol

import aiohttp
from aiohttp import web

from cluster.kdf import derive
from common.audit import SqliteAuditLog
from common.config import ConfigError
from common.keys import AUDIT, CLIENT_ADDRESS, VERIFIER
from common.ratelimit import WindowLimiter
from common.tokens import TokenVerifier
from portal.app import create_portal
from portal.app import mount as mount_portal
from portal.config import PortalConfig
from portal.keys import PASSWORDS, PORTAL
from portal.store import Visit
from sfu.control import MediaControl, MediaEvents
from signalling import metrics, rest
from signalling.arrival import Arrivals
from signalling.cluster import ServedRooms, build_coordinator
from signalling.config import Config, check_cluster, check_secret, ensure_credentials
from signalling.executor import Executor
from signalling.guard import GUARD, Guard
from signalling.hub import CLOSE_GOING_AWAY, Hub
from signalling.keys import (
    CLUSTER,
    CONFIG,
    HOP_KEY,
    HTTP,
    HUB,
    ORIGINS,
    PATIENTS,
    PRECALL_LIMIT,
    READY,
    ROOMS,
    SERVICE,
    WEBHOOKS,
    WINDOW_LOOKUP_LIMIT,
)
from signalling.media_bridge import MediaBridge, RoomMediaEvents
from signalling.origins import OriginPolicy
from signalling.precall import precall_socket
from signalling.resume import ResumeTokens
from signalling.rooms import RoomStore
from signalling.service import RoomService
from signalling.web import setup as setup_web
from signalling.webhook_store import WebhookStore
from signalling.webhooks import WEBHOOKS_FILE, Webhooks
from signalling.ws import room_socket
from staff.app import setup as setup_staff
from staff.config import StaffConfig
from waiting_room.clock import Clock, wall_clock

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 1.0
AUDIT_FILE = "audit.sqlite3"
ROOMS_FILE = "visitroom.sqlite3"


class MediaPlane(MediaControl, Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


MediaFactory = Callable[[Config, MediaEvents], MediaPlane | None]


def default_media(config: Config, events: MediaEvents) -> MediaPlane | None:
    from signalling.media import build_media

    return build_media(config, events)


def create_app(
    config: Config,
    *,
    portal: PortalConfig | None = None,
    staff: StaffConfig | None = None,
    clock: Clock = wall_clock,
    media_factory: MediaFactory = default_media,
) -> web.Application:
    config = with_cluster_secret(config)
    app = web.Application(client_max_size=1024 * 1024)
    app[CONFIG] = config
    app[HOP_KEY] = derive(config.cluster_secret or "", "hop")
    app[ORIGINS] = OriginPolicy.build(config.base_url, config.allowed_origins, config.internal_url)
    app[VERIFIER] = TokenVerifier(config.api_keys, max_lifetime_s=config.token_max_lifetime_s)
    app[AUDIT] = SqliteAuditLog(
        config.data_dir / AUDIT_FILE, node=config.node_id or "local", key=config.audit_key
    )
    app[ROOMS] = RoomStore(
        config.data_dir / ROOMS_FILE,
        clock,
        config.default_max_participants,
        config.lobby_cap_factor,
    )
    app[HUB] = Hub()
    app[WEBHOOKS] = Webhooks(
        config.webhooks, WebhookStore(config.data_dir / WEBHOOKS_FILE), clock, app[AUDIT]
    )
    media = media_factory(config, RoomMediaEvents(app[HUB], app[ROOMS]))
    bridge, tokens = MediaBridge(media), ResumeTokens()
    served = ServedRooms(app[ROOMS], app[HUB], bridge, tokens)
    app[CLUSTER] = build_coordinator(config, clock, served)
    app[SERVICE] = build_service(config, app, clock, bridge, tokens)
    app[PRECALL_LIMIT] = WindowLimiter(10, 60.0, clock)
    app[WINDOW_LOOKUP_LIMIT] = WindowLimiter(rest.WINDOW_LOOKUPS_PER_MINUTE, 60.0, clock)
    app[READY] = {"ready": False}
    app[GUARD] = Guard(
        config.header_timeout_s, config.max_unauthenticated_per_address, config.trusted_proxies
    )
    app[CLIENT_ADDRESS] = app[GUARD].client_address
    app.cleanup_ctx.append(_stores)
    app.cleanup_ctx.append(_webhooks)
    app.cleanup_ctx.append(_cluster)
    app.cleanup_ctx.append(_media(media))
    app.cleanup_ctx.append(_sweeper)
    app.cleanup_ctx.append(_retention)
    app.on_shutdown.append(_drain)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/rooms/{room_id}/ws", room_socket)
    app.router.add_get("/v1/precall/ws", precall_socket)
    rest.setup_routes(app)
    metrics.setup(app)
    # Mounted unconditionally: a portal or web client that fails to import
    # stops the server at start (cmd_serve says which), never a silent 404.
    settings = portal if portal is not None else portal_config(config, {})
    visits = ScheduledVisits(app[ROOMS])
    portal_app = create_portal(
        settings, app[AUDIT], app[VERIFIER], clock, visits, events=app[WEBHOOKS].portal_event
    )
    mount_portal(app, portal_app)
    app[PATIENTS] = portal_app[PORTAL]  # rooms' patient_id: the portal's patients
    staff_settings = staff if staff is not None else staff_config(config, {})
    setup_staff(app, staff_settings, settings, app[AUDIT], clock, portal_app[PASSWORDS])
    setup_web(app)
    return app


class ScheduledVisits:
    """portal.store.Visits over the room store: the portal emails visit links of these."""

    def __init__(self, rooms: RoomStore) -> None:
        self._rooms = rooms

    def visit(self, room_id: str) -> Visit | None:
        record = self._rooms.record(room_id)
        if record is None:
            return None
        return Visit(record.room_id, record.practice, record.starts_at, record.ends_at)


def build_service(
    config: Config, app: web.Application, clock: Clock, media: MediaBridge, tokens: ResumeTokens
) -> RoomService:
    """The room service and its parts, each given what it needs when it is made."""
    rooms, hub, audit, cluster = app[ROOMS], app[HUB], app[AUDIT], app[CLUSTER]
    executor = Executor(cluster, rooms, hub, media, tokens, audit, clock, app[WEBHOOKS])
    arrivals = Arrivals(
        config, rooms, hub, cluster, executor, media, tokens, app[VERIFIER], audit, clock
    )
    return RoomService(config, rooms, hub, cluster, arrivals, executor, media, audit, clock)


def portal_config(config: Config, env: Mapping[str, str]) -> PortalConfig:
    """The portal's settings from `env`, with the three it shares with the server
    (data directory, public base URL, API keys) taken from `config`."""
    return PortalConfig.from_env(
        env, data_dir=config.data_dir, base_url=config.base_url, api_keys=config.api_keys
    )


def staff_config(config: Config, env: Mapping[str, str]) -> StaffConfig:
    """Staff sign-in settings from `env`, with what it shares with the server."""
    return StaffConfig.from_env(
        env,
        data_dir=config.data_dir,
        base_url=config.base_url,
        api_keys=config.api_keys,
        tls=config.tls_cert is not None or config.base_url.startswith("https://"),
    )


def with_cluster_secret(config: Config) -> Config:
    """Check the secrets; one machine without a cluster secret gets one stored in its data dir."""
    if not config.api_keys:
        raise ConfigError("no API key/secret configured")
    for secret in config.api_keys.values():
        check_secret(secret)
    check_cluster(config.cluster_secret, config.redis_url)
    if config.cluster_secret is not None:
        return config
    stored, _ = ensure_credentials(config.data_dir, api_key=False, cluster=True)
    return replace(config, cluster_secret=stored["cluster_secret"])


async def _stores(app: web.Application) -> AsyncIterator[None]:
    await app[AUDIT].start()
    await app[ROOMS].start()
    yield
    await app[SERVICE].drain_media_calls()
    await app[ROOMS].close()
    await app[AUDIT].close()


async def _webhooks(app: web.Application) -> AsyncIterator[None]:
    """Started before rooms are restored and swept (which may make events); stopped
    after the cluster, so the last events are stored."""
    await app[WEBHOOKS].start()
    yield
    await app[WEBHOOKS].stop()


def _media(media: MediaPlane | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def media_ctx(app: web.Application) -> AsyncIterator[None]:
        if media is not None:
            await media.start()
        app[READY]["ready"] = True
        yield
        app[READY]["ready"] = False
        if media is not None:
            await media.stop()

    return media_ctx


async def _retention(app: web.Application) -> AsyncIterator[None]:
    """Once a day, drop audit rows older than the retention period (six years or more)."""

    async def prune_daily() -> None:
        while True:
            days = app[CONFIG].audit_retention_days
            try:
                removed = await app[AUDIT].prune(app[SERVICE].clock() - days * 86400)
                if removed:
                    log.info("audit retention: removed %d rows older than %d days", removed, days)
            except Exception:
                log.exception("audit retention failed")
            await asyncio.sleep(86400)

    task = asyncio.create_task(prune_daily(), name="audit-retention")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    await app[SERVICE].sweep()  # rooms restored after the resume window: nobody resumes

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                await app[SERVICE].sweep()
            except Exception:
                log.exception("room sweep failed")

    task = asyncio.create_task(sweep_forever(), name="room-sweeper")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _cluster(app: web.Application) -> AsyncIterator[None]:
    app[HTTP] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    await app[CLUSTER].start()
    notices = asyncio.create_task(_serve_notices(app), name="cluster-notices")
    yield
    notices.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await notices
    await app[CLUSTER].stop()
    await app[HTTP].close()


async def _serve_notices(app: web.Application) -> None:
    """Act on what other nodes tell this one (one machine: nothing ever comes)."""
    while True:
        notice = await app[CLUSTER].next_notice()
        try:
            await app[SERVICE].on_notice(notice)
        except Exception:
            log.exception("a cluster notice failed")


async def _drain(app: web.Application) -> None:
    """Shutting down: hand rooms over (cluster) or say goodbye (one machine), then wait."""
    await app[SERVICE].drain()
    app[READY]["ready"] = False
    deadline = app[CONFIG].drain_deadline_s
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(deadline):
            await asyncio.gather(*(conn.closed() for conn in app[HUB].connections()))
    for conn in app[HUB].connections():
        conn.close(CLOSE_GOING_AWAY)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    cluster = request.app[CLUSTER]
    if not request.app[READY].get("ready"):
        return web.json_response({"status": "starting"}, status=503)
    if cluster.draining:
        return web.json_response({"status": "draining"}, status=503)
    if not cluster.healthy:
        return web.json_response({"status": "bus unavailable"}, status=503)
    return web.json_response({"status": "ready"})
