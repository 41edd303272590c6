"""Typed application keys shared by the signalling app and the modules it mounts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from signalling.audit import SqliteAuditLog
from signalling.auth import TokenVerifier
from signalling.config import Config

if TYPE_CHECKING:
    from signalling.hub import Hub
    from signalling.rooms import RoomStore
    from sfu.control import MediaControl

CONFIG = web.AppKey("config", Config)
AUDIT = web.AppKey("audit", SqliteAuditLog)
VERIFIER = web.AppKey("verifier", TokenVerifier)
HUB = web.AppKey("hub", "Hub")
ROOMS = web.AppKey("rooms", "RoomStore")
MEDIA = web.AppKey("media", "MediaControl")
READY = web.AppKey("ready", dict)
