"""MediaSettings: validation, the env formats and plain-data round trips."""

from __future__ import annotations

import msgpack
import pytest

from sfu.settings import MediaSettings, SettingsError, parse_hosts, parse_ports, parse_remb_table


def test_defaults_gather_on_the_machine_and_cap_slots() -> None:
    settings = MediaSettings()
    assert settings.ice_hosts == () and settings.announced_ip is None
    assert settings.video_slots_cap == 8 and settings.audio_slots_cap == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ice_hosts": ("localhost",)},
        {"announced_ip": "example.org"},
        {"rtc_ports": (80, 90)},
        {"rtc_ports": (50000, 40000)},
        {"remb_table": ()},
        {"video_slots_cap": -1},
    ],
)
def test_bad_values_are_refused_with_the_field_named(kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(SettingsError):
        MediaSettings(**kwargs)


def test_env_formats_are_parsed() -> None:
    assert parse_ports("40000-40099") == (40000, 40099)
    assert parse_hosts("127.0.0.1, ::1") == ("127.0.0.1", "::1")
    assert parse_remb_table("2:1500000,*:300000") == ((2, 1_500_000), (None, 300_000))
    with pytest.raises(SettingsError):
        parse_ports("forty")
    with pytest.raises(SettingsError):
        parse_remb_table("2:x")


def test_settings_survive_msgpack() -> None:
    settings = MediaSettings(ice_hosts=("127.0.0.1",), rtc_ports=(40000, 40010))
    data = msgpack.unpackb(msgpack.packb(settings.to_dict()))
    assert MediaSettings.from_dict(data) == settings


def test_single_port_is_the_default_and_a_port_range_means_sockets_of_their_own() -> None:
    assert MediaSettings().shared_socket
    assert MediaSettings(rtc_udp_port=40000).shared_socket
    assert not MediaSettings(rtc_ports=(40000, 40999)).shared_socket
    assert MediaSettings(rtc_ports=(41000, 41999), rtc_udp_port=40000).shared_socket


def test_each_worker_gets_the_port_after_the_previous_ones() -> None:
    settings = MediaSettings(rtc_udp_port=40000)
    assert [settings.for_worker(i).rtc_udp_port for i in range(3)] == [40000, 40001, 40002]
    assert MediaSettings().for_worker(5).rtc_udp_port is None, "kernel's pick for everyone"
    with pytest.raises(SettingsError, match="65535"):
        MediaSettings(rtc_udp_port=65535).for_worker(1)
    with pytest.raises(SettingsError, match="rtc_udp_port"):
        MediaSettings(rtc_udp_port=80)
    again = MediaSettings.from_dict(msgpack.unpackb(msgpack.packb(settings.to_dict())))
    assert again == settings
