"""Build the media plane the signalling server drives."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sfu.control import MediaEvents
from signalling.config import Config

if TYPE_CHECKING:
    from signalling.app import MediaPlane

log = logging.getLogger(__name__)


def build_local_media(config: Config, events: MediaEvents) -> MediaPlane | None:
    """The in-process SFU; None (offers answered `unavailable`) until the SFU is installed."""
    try:
        from sfu.local import LocalMedia  # type: ignore[import-not-found,unused-ignore]
        from sfu.settings import MediaSettings  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        log.warning("the SFU is not installed: media is unavailable")
        return None
    settings = MediaSettings(
        ice_hosts=config.ice_hosts,
        announced_ip=config.announced_ip,
        rtc_ports=config.rtc_ports,
    )
    media: MediaPlane = LocalMedia(settings, events)
    return media
