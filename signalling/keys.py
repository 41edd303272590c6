"""Typed application keys of the signalling app (the audit trail and the token
verifier, which mounted parts share too, are in common.keys)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from signalling.config import Config
from signalling.origins import OriginPolicy

if TYPE_CHECKING:
    import aiohttp
    from prometheus_client import CollectorRegistry

    from cluster.coordinator import Coordinator
    from common.ratelimit import WindowLimiter
    from signalling.hub import Hub
    from signalling.patients import PatientDirectory
    from signalling.rooms import RoomStore
    from signalling.service import RoomService
    from signalling.webhooks import Webhooks

CONFIG = web.AppKey("config", Config)
HOP_KEY = web.AppKey("hop_key", bytes)  # derived from the cluster secret (cluster.kdf)
ORIGINS = web.AppKey("origins", OriginPolicy)
HUB: web.AppKey[Hub] = web.AppKey("hub")
ROOMS: web.AppKey[RoomStore] = web.AppKey("rooms")
SERVICE: web.AppKey[RoomService] = web.AppKey("service")
PRECALL_LIMIT: web.AppKey[WindowLimiter] = web.AppKey("precall_limit")
WINDOW_LOOKUP_LIMIT: web.AppKey[WindowLimiter] = web.AppKey("window_lookup_limit")
READY: web.AppKey[dict[str, Any]] = web.AppKey("ready")
METRICS: web.AppKey[CollectorRegistry] = web.AppKey("metrics")
METRICS_ADDRESS: web.AppKey[tuple[str, int]] = web.AppKey("metrics_address")  # loopback port
CLUSTER: web.AppKey[Coordinator] = web.AppKey("cluster")
HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("http")
WEBHOOKS: web.AppKey[Webhooks] = web.AppKey("webhooks")
PATIENTS: web.AppKey[PatientDirectory] = web.AppKey("patients")  # the portal's patients
