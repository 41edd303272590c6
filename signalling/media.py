"""Build the media plane the signalling server drives.

`workers == 0`: the SFU runs inside this process (`LocalMedia`; tests and
tiny deployments).  Otherwise a `WorkerPool` of that many SFU worker
processes, with the placement budgets of the configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sfu.control import MediaEvents
from sfu.local import LocalMedia
from sfu.placement import Budget
from sfu.pool import PoolSettings, WorkerPool
from sfu.settings import MediaSettings
from signalling.config import Config

if TYPE_CHECKING:
    from signalling.app import MediaPlane


def media_settings(config: Config) -> MediaSettings:
    return MediaSettings(
        ice_hosts=config.ice_hosts,
        announced_ip=config.announced_ip,
        rtc_ports=config.rtc_ports,
        stage_video_slots=config.stage_video_slots,
        thumbnail_refresh_s=config.thumbnail_refresh_s,
    )


def pool_settings(config: Config) -> PoolSettings:
    budget = Budget(
        max_participants=config.worker_max_participants,
        pps=config.worker_pps_budget,
        cpu=config.worker_cpu_budget,
    )
    return PoolSettings(workers=config.workers, budget=budget)


def build_local_media(config: Config, events: MediaEvents) -> MediaPlane | None:
    """The SFU inside this process."""
    media: MediaPlane = LocalMedia(media_settings(config), events)
    return media


def build_media(config: Config, events: MediaEvents) -> MediaPlane | None:
    """`LocalMedia` for `workers == 0`, else a pool of SFU worker processes."""
    if config.workers == 0:
        return build_local_media(config, events)
    pool: MediaPlane = WorkerPool(media_settings(config), pool_settings(config), events)
    return pool
