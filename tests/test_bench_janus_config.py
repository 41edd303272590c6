"""The pure parts of the Janus comparison (bench/janus_driver.py, bench/compare_janus.py).

Nothing here starts Janus or needs the `janus` package: the configuration
writer, the Janus API / VideoRoom message builders and reply parsers, the
subscription plan that makes Janus's load equal to visitroom's, and the
payload send stamp the latency is measured with.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import compare_janus  # noqa: E402
import janus_driver as jd  # noqa: E402

from tests.synthetic_peer import STAMP_SIZE, read_stamp, stamp_payload  # noqa: E402

PLUGINS = ["libjanus_audiobridge.so", "libjanus_echotest.so", "libjanus_videoroom.so"]
TRANSPORTS = ["libjanus_http.so", "libjanus_pfunix.so", "libjanus_websockets.so"]
LOGGERS = ["libjanus_jsonlog.so"]
HANDLERS = ["libjanus_sampleevh.so", "libjanus_wsevh.so"]


def make_config(tmp_path: Path, **overrides: object) -> jd.JanusConfig:
    values: dict[str, object] = {
        "folder": tmp_path,
        "ws_port": 18188,
        "rtp_ports": (30000, 33999),
        "interface": "vrj123",
        "address": "127.0.0.2",
        "api_secret": jd.new_api_secret(),
    }
    values.update(overrides)
    return jd.JanusConfig(**values)  # type: ignore[arg-type]


def render(config: jd.JanusConfig) -> dict[str, str]:
    return jd.janus_config(
        config,
        plugins=PLUGINS,
        transports=TRANSPORTS,
        loggers=LOGGERS,
        event_handlers=HANDLERS,
    )


def settings(text: str) -> dict[str, dict[str, str]]:
    """section -> key -> raw value of our flat jcfg output."""
    out: dict[str, dict[str, str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.endswith(": {"):
            section = line[:-3]
            out[section] = {}
        elif line.strip() != "}":
            key, _, value = line.strip().partition(" = ")
            out[section][key] = value.strip('"')
    return out


def test_writes_the_three_files(tmp_path: Path) -> None:
    files = render(make_config(tmp_path))
    assert set(files) == {
        "janus.jcfg",
        "janus.transport.websockets.jcfg",
        "janus.plugin.videoroom.jcfg",
    }
    for text in files.values():  # balanced braces, one key per line
        assert text.count("{") == text.count("}")


def test_api_secret_is_set_and_random(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    general = settings(render(config)["janus.jcfg"])["general"]
    assert general["api_secret"] == config.api_secret
    assert len(config.api_secret) >= 24
    assert jd.new_api_secret() != jd.new_api_secret()
    assert "admin_secret" not in general
    assert "token_auth" not in general


def test_admin_api_is_off(tmp_path: Path) -> None:
    files = render(make_config(tmp_path))
    ws = settings(files["janus.transport.websockets.jcfg"])
    assert ws["admin"] == {"admin_ws": "false", "admin_wss": "false"}
    assert ws["general"]["wss"] == "false"
    # The HTTP transport (the other way to the admin API) is disabled.
    disabled = settings(files["janus.jcfg"])["transports"]["disable"].split(",")
    assert "libjanus_http.so" in disabled


def test_every_address_and_port_is_on_the_loopback_range(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    files = render(config)
    main = settings(files["janus.jcfg"])
    ws = settings(files["janus.transport.websockets.jcfg"])["general"]
    assert ws["ws_ip"] == "127.0.0.1"
    assert ws["ws_port"] == "18188"
    assert main["nat"]["ice_enforce_list"] == "vrj123"  # the interface holding 127.0.0.2 only
    assert main["media"]["rtp_port_range"] == "30000-33999"
    assert main["media"]["ipv6"] == "false"
    assert "stun_server" not in main["nat"] and "turn_server" not in main["nat"]
    for text in files.values():
        for found in re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", text):
            assert ipaddress.ip_address(found) in ipaddress.ip_network("127.0.0.0/8")


def test_only_videoroom_and_websockets_are_enabled(tmp_path: Path) -> None:
    main = settings(render(make_config(tmp_path))["janus.jcfg"])
    plugins = main["plugins"]["disable"].split(",")
    transports = main["transports"]["disable"].split(",")
    assert set(plugins) == set(PLUGINS) - {"libjanus_videoroom.so"}
    assert set(transports) == set(TRANSPORTS) - {"libjanus_websockets.so"}
    assert main["loggers"]["disable"] == "libjanus_jsonlog.so"
    assert set(main["events"]["disable"].split(",")) == set(HANDLERS)
    assert main["events"]["broadcast"] == "false"


def test_event_loops_only_when_asked(tmp_path: Path) -> None:
    assert "event_loops" not in settings(render(make_config(tmp_path))["janus.jcfg"])["general"]
    general = settings(render(make_config(tmp_path, event_loops=2))["janus.jcfg"])["general"]
    assert general["event_loops"] == "2"


@pytest.mark.parametrize(
    "overrides",
    [
        {"address": "192.0.2.2"},
        {"address": "10.0.0.1"},
        {"ws_ip": "0.0.0.0"},
        {"address": "::1"},
        {"rtp_ports": (80, 90)},
        {"rtp_ports": (40000, 30000)},
        {"api_secret": "short"},
        {"interface": "eth0,lo"},
        {"interface": "a-name-longer-than-15"},
    ],
)
def test_refuses_anything_off_loopback_or_unsafe(
    tmp_path: Path, overrides: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        make_config(tmp_path, **overrides)


def test_a_network_lab_address_is_allowed_for_ice(tmp_path: Path) -> None:
    """bench/netlab.py runs Janus on the host end of its lab's veth (10.77.N.1)."""
    assert make_config(tmp_path, address="10.77.5.1", interface="vrh0a1b2c").address == "10.77.5.1"
    with pytest.raises(ValueError):
        make_config(tmp_path, ws_ip="10.77.5.1")  # the API stays on loopback


def test_refuses_quotes_in_values(tmp_path: Path) -> None:
    config = make_config(tmp_path, folder=tmp_path / 'a"b')
    with pytest.raises(ValueError):
        render(config)


def test_write_janus_config_is_private(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    config = make_config(tmp_path, folder=folder)
    path = jd.write_janus_config(config)
    assert path == folder / "janus.jcfg"
    for name in ("janus.jcfg", "janus.transport.websockets.jcfg", "janus.plugin.videoroom.jcfg"):
        assert (folder / name).stat().st_mode & 0o077 == 0
    assert settings(path.read_text())["general"]["configs_folder"] == str(folder)


def test_free_alias_address_skips_taken_ones() -> None:
    assert jd.free_alias_address({"127.0.0.1"}) == "127.0.0.2"
    assert jd.free_alias_address({"127.0.0.1", "127.0.0.2", "127.0.0.3"}) == "127.0.0.4"


# -- messages -----------------------------------------------------------------


def test_requests_carry_transaction_and_secret() -> None:
    ids = jd.Transactions()
    first, second = ids.next(), ids.next()
    assert first != second
    create = jd.request("create", first, "s3cret")
    assert create == {"janus": "create", "transaction": first, "apisecret": "s3cret"}
    attach = jd.attach_request(second, "s3cret", 42)
    assert attach["session_id"] == 42 and attach["plugin"] == "janus.plugin.videoroom"
    keepalive = jd.request("keepalive", "t9", "s3cret", session=42)
    assert keepalive["session_id"] == 42 and keepalive["apisecret"] == "s3cret"


def test_message_request_with_and_without_jsep() -> None:
    body = jd.publisher_join(1234, "pub")
    plain = jd.message_request("t1", "x" * 16, 1, 2, body)
    assert plain["handle_id"] == 2 and plain["body"] == body and "jsep" not in plain
    offer = jd.jsep("offer", "v=0\r\n")
    with_jsep = jd.message_request("t2", "x" * 16, 1, 2, jd.publisher_configure(), offer)
    assert with_jsep["jsep"] == {"type": "offer", "sdp": "v=0\r\n", "trickle": False}


def test_videoroom_bodies() -> None:
    room = jd.create_room(7, 50)
    assert room["request"] == "create" and room["room"] == 7 and room["publishers"] == 50
    assert room["videocodec"] == "vp8" and room["audiocodec"] == "opus"
    assert room["record"] is False and room["permanent"] is False
    assert jd.publisher_join(7, "p")["ptype"] == "publisher"
    assert jd.publisher_configure() == {"request": "configure", "audio": True, "video": True}
    join = jd.subscriber_join(7, [jd.StreamRef(11), jd.StreamRef(12, "0")])
    assert join["ptype"] == "subscriber"
    assert join["streams"] == [{"feed": 11}, {"feed": 12, "mid": "0"}]
    assert jd.subscriber_start() == {"request": "start"}
    assert jd.destroy_room(7) == {"request": "destroy", "room": 7, "permanent": False}


def test_parsers_accept_replies() -> None:
    assert jd.created_id({"janus": "success", "transaction": "t1", "data": {"id": 99}}) == 99
    joined = {
        "janus": "event",
        "sender": 5,
        "plugindata": {
            "plugin": "janus.plugin.videoroom",
            "data": {"videoroom": "joined", "room": 7, "id": 1234, "publishers": []},
        },
    }
    assert jd.videoroom_event(joined, "joined")["id"] == 1234
    configured = {
        "janus": "event",
        "plugindata": {
            "plugin": "janus.plugin.videoroom",
            "data": {
                "videoroom": "event",
                "configured": "ok",
                "streams": [
                    {"type": "audio", "mindex": 0, "mid": "0", "codec": "opus"},
                    {"type": "video", "mindex": 1, "mid": "1", "codec": "vp8"},
                ],
            },
        },
        "jsep": {"type": "answer", "sdp": "v=0\r\n"},
    }
    assert jd.publisher_mids(jd.videoroom_event(configured, "event")) == {
        "audio": "0",
        "video": "1",
    }
    assert jd.answer_sdp(configured, "answer") == "v=0\r\n"


def test_parsers_raise_on_errors() -> None:
    core = {"janus": "error", "error": {"code": 403, "reason": "Unauthorized request"}}
    with pytest.raises(jd.JanusError) as info:
        jd.check_reply(core)
    assert info.value.code == 403
    plugin = {
        "janus": "event",
        "plugindata": {
            "plugin": "janus.plugin.videoroom",
            "data": {"videoroom": "event", "error_code": 428, "error": "No such feed (1)"},
        },
    }
    with pytest.raises(jd.JanusError) as info:
        jd.check_reply(plugin)
    assert info.value.code == 428
    with pytest.raises(jd.JanusError):
        jd.created_id({"janus": "ack", "transaction": "t1"})
    with pytest.raises(jd.JanusError):
        jd.videoroom_event({"janus": "event", "plugindata": {"data": {"videoroom": "x"}}}, "joined")
    with pytest.raises(jd.JanusError):
        jd.answer_sdp({"janus": "event", "jsep": {"type": "offer", "sdp": ""}}, "answer")


# -- equal loads ----------------------------------------------------------------


def feeds_for(scenario: compare_janus.Scenario) -> dict[int, dict[str, tuple[int, str]]]:
    out: dict[int, dict[str, tuple[int, str]]] = {}
    for i, role in enumerate(scenario.roles):
        kinds = {}
        if role.audio:
            kinds["audio"] = (1000 + i, "0")
        if role.video:
            kinds["video"] = (1000 + i, "1")
        if kinds:
            out[i] = kinds
    return out


@pytest.mark.parametrize("plan", compare_janus.JANUS_PLANS)
@pytest.mark.parametrize("name", list(compare_janus.SCENARIOS))
def test_janus_subscribes_to_as_many_streams_as_visitroom_sends(name: str, plan: str) -> None:
    scenario = compare_janus.SCENARIOS[name]
    feeds = feeds_for(scenario)
    for i, role in enumerate(scenario.roles):
        refs = compare_janus.janus_subscriptions(scenario, i, feeds, plan) if role.receives else []
        expected = compare_janus.expected_streams(scenario, i) if role.receives else 0
        assert len(refs) == expected
        assert all(ref.feed != 1000 + i for ref in refs)  # never one's own feed
        assert len(set(refs)) == len(refs)
        video = [r for r in refs if r.mid == "1"]
        audio = [r for r in refs if r.mid == "0"]
        assert len(video) <= role.video_slots and len(audio) <= role.audio_slots


def test_scenarios_are_the_ones_documented() -> None:
    s = compare_janus.SCENARIOS
    assert [len(s[f"fanout-1x{n}"].receivers) for n in (10, 50, 100)] == [10, 50, 100]
    meeting = s["meeting-10x10"]
    assert len(meeting.publishers) == 10 and len(meeting.receivers) == 10
    assert compare_janus.expected_streams(meeting, 0) == 5 + 3
    audio = s["audio-50"]
    assert len(audio.publishers) == 50 and not any(r.video for r in audio.roles)
    assert compare_janus.expected_streams(audio, 0) == 3


def fan_out_per_feed(scenario: compare_janus.Scenario, plan: str) -> dict[int, int]:
    feeds = feeds_for(scenario)
    counts: dict[int, int] = {}
    for i, role in enumerate(scenario.roles):
        if role.receives:
            for ref in compare_janus.janus_subscriptions(scenario, i, feeds, plan):
                counts[ref.feed] = counts.get(ref.feed, 0) + 1
    return counts


def test_plan_top_has_visitroom_shape_and_ring_spreads() -> None:
    audio = compare_janus.SCENARIOS["audio-50"]
    # "top": like visitroom's 3 loudest, three voices go to (almost) everyone.
    top = fan_out_per_feed(audio, "top")
    assert sum(top.values()) == 150
    assert sorted(top.values(), reverse=True)[:3] == [49, 49, 49]
    # "ring": the same 150 streams, every voice to exactly 3 people.
    ring = fan_out_per_feed(audio, "ring")
    assert sum(ring.values()) == 150 and set(ring.values()) == {3}
    with pytest.raises(ValueError):
        compare_janus.janus_subscriptions(audio, 0, feeds_for(audio), "random")


def test_summary_ratio_and_spread() -> None:
    def run(server: str, pps: float, cpu: float) -> compare_janus.Run:
        return compare_janus.Run(
            server=server,
            scenario="fanout-1x10",
            run=0,
            input_pps=206.0,
            forwarded_pps=pps,
            server_cpu_pct=100 * cpu,
            idle_cpu_pct=1.0,
            pps_per_core=pps / cpu,
            marginal_us_per_packet=1.0,
            loss_pct=0.0,
            added_p50_ms=0.2,
            added_p99_ms=2.0,
            latency_samples=100,
            rss_mb=50.0,
            rss_delta_mb=1.0,
            threads=3,
            streams_ok=True,
            decrypt_failures=0,
            generator_cpu_pct=20.0,
            generator_lag_p99_ms=1.0,
            other_server_cpu_pct=0.1,
            join_s=1.0,
            load_1min=0.5,
        )

    runs = {
        "visitroom": [run("visitroom", 2000, 0.05), run("visitroom", 2000, 0.04)],
        "janus": [run("janus", 2000, 0.04), run("janus", 2000, 0.05)],
    }
    summary = compare_janus.summarize(compare_janus.SCENARIOS["fanout-1x10"], runs)
    assert summary["visitroom_pps_per_core"] == pytest.approx(45000)
    assert summary["janus_pps_per_core"] == pytest.approx(45000)
    assert summary["ratio"] == pytest.approx(1.0)
    assert summary["ratio_paired_min"] == pytest.approx(0.8)
    assert summary["ratio_paired_max"] == pytest.approx(1.25)
    assert summary["ratio_paired_median"] == pytest.approx((0.8 + 1.25) / 2)
    for key in ("visitroom_loss_pct", "janus_loss_pct", "visitroom_added_p99_ms"):
        assert key in summary


# -- the latency stamp ------------------------------------------------------------


def test_payload_stamp_round_trip_keeps_the_size() -> None:
    payload = bytes(range(100))
    stamped = stamp_payload(payload, now=1_700_000_000.25)
    assert len(stamped) == len(payload)
    assert stamped[:-STAMP_SIZE] == payload[:-STAMP_SIZE]
    assert read_stamp(stamped) == 1_700_000_000.25
    assert read_stamp(payload) is None
    assert stamp_payload(b"tiny") == b"tiny"
