"""Build the media plane the signalling server drives.

`workers == 0`: the SFU runs inside this process (`LocalMedia`; tests and
tiny deployments).  Otherwise a `WorkerPool` of that many SFU worker
processes, with the placement budgets of the configuration; with
``--redis`` the pool also registers its workers and takes the other nodes'
(`cluster.workers`), authenticated with keys derived from the cluster secret.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import TYPE_CHECKING

from sfu.control import MediaEvents
from sfu.local import LocalMedia
from sfu.settings import MediaSettings
from sfu.workers.fleet import PoolSettings
from sfu.workers.placement import Budget
from sfu.workers.pool import WorkerPool
from signalling.config import Config

if TYPE_CHECKING:
    from signalling.app import MediaPlane


def media_settings(config: Config) -> MediaSettings:
    return MediaSettings(
        ice_hosts=config.ice_hosts,
        announced_ip=config.announced_ip,
        rtc_ports=config.rtc_ports,
        rtc_udp_port=config.rtc_udp_port,
        stage_video_slots=config.stage_video_slots,
        thumbnail_refresh_s=config.thumbnail_refresh_s,
        max_connecting=config.max_connecting,
        layer_trace=config.layer_trace,
        per_layer_keyframes=config.per_layer_keyframes,
    )


def worker_host(config: Config) -> str:
    """The address other nodes reach this node's workers on."""
    if config.worker_host:
        return config.worker_host
    try:
        wildcard = ipaddress.ip_address(config.host).is_unspecified
    except ValueError:
        wildcard = False
    return "127.0.0.1" if wildcard or config.host == "localhost" else config.host


def pool_settings(config: Config, node_id: str = "") -> PoolSettings:
    budget = Budget(
        max_participants=config.worker_max_participants,
        pps=config.worker_pps_budget,
        cpu=config.worker_cpu_budget,
    )
    host = worker_host(config) if config.redis_url else "127.0.0.1"
    return PoolSettings(workers=config.workers, budget=budget, relay_host=host, node_id=node_id)


def build_local_media(config: Config, events: MediaEvents) -> MediaPlane | None:
    """The SFU inside this process."""
    media: MediaPlane = LocalMedia(media_settings(config), events)
    return media


def build_media(config: Config, events: MediaEvents) -> MediaPlane | None:
    """`LocalMedia` for `workers == 0`, else a pool of SFU worker processes."""
    if config.workers == 0:
        return build_local_media(config, events)
    secret = config.cluster_secret
    node_id = config.node_id or "node-" + secrets.token_hex(4)
    directory = None
    if config.redis_url:
        from cluster.redisbus import RedisBus
        from cluster.workers import BusWorkerDirectory

        directory = BusWorkerDirectory(RedisBus(config.redis_url), node_id)
    pool: MediaPlane = WorkerPool(
        media_settings(config),
        pool_settings(config, node_id),
        events,
        secret=secret,
        directory=directory,
    )
    return pool
