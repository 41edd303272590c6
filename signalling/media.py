"""Build the media plane the signalling server drives."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sfu.control import MediaEvents
from sfu.local import LocalMedia
from sfu.settings import MediaSettings
from signalling.config import Config

if TYPE_CHECKING:
    from signalling.app import MediaPlane


def media_settings(config: Config) -> MediaSettings:
    return MediaSettings(
        ice_hosts=config.ice_hosts,
        announced_ip=config.announced_ip,
        rtc_ports=config.rtc_ports,
    )


def build_local_media(config: Config, events: MediaEvents) -> MediaPlane | None:
    """The SFU inside this process."""
    media: MediaPlane = LocalMedia(media_settings(config), events)
    return media
