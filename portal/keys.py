"""Typed application keys of the portal sub-application (and of its parent: SUBAPP)."""

from __future__ import annotations

from aiohttp import web

from common.clock import Clock
from common.sqlite_db import SqliteDatabase
from portal.config import PortalConfig
from portal.passwords import Passwords
from portal.service import PortalService

PORTAL = web.AppKey("portal", PortalService)
DATABASE = web.AppKey("portal_database", SqliteDatabase)
PASSWORDS = web.AppKey("portal_passwords", Passwords)
SETTINGS = web.AppKey("portal_settings", PortalConfig)
CLOCK: web.AppKey[Clock] = web.AppKey("portal_clock")
SUBAPP = web.AppKey("portal_app", web.Application)  # on the parent app: the portal
