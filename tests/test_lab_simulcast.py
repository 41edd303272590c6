"""A real Chromium viewer on a slow downlink (issue 13): the publisher sends its
1280x720 camera as simulcast from the host side, the viewer sits in a network
namespace whose downlink a tbf qdisc caps at 400 kbit/s (tests/netlab.py). The
SFU must notice (transport-cc feedback, its estimate) and forward a lower layer:
the viewer ends on a frame width below the publisher's full width and keeps
decoding, without a long freeze. Needs root (the lab)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import token
from tests.netlab import lab, lab_browsers, need_root, sh
from tests.web_support import web_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from netlab_clients import (  # noqa: E402
    FULL,
    PUBLISHER,
    STOP,
    Role,
    camera_args,
    join,
    samples,
    start_sampler,
    wait_decoding,
)
from netlab_metrics import freeze_ratio, open_stall  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CAP_KBPS = 400
CAPPED_S = 16  # time on the capped link; the last LAST_S of it are judged
LAST_S = 6


def test_a_capped_viewer_ends_on_a_lower_layer_and_keeps_decoding(tmp_path: Path) -> None:
    need_root()
    with lab() as net:
        env: dict[str, str | None] = {"VISITROOM_ICE_HOSTS": net.host_ip}
        with (
            web_server(tmp_path, env, host=net.host_ip) as site,
            sync_playwright() as pw,
            lab_browsers(pw, tmp_path, net, site.url, host_args=camera_args(tmp_path)) as (
                host,
                guest,
            ),
        ):
            room = site.schedule()
            publisher, viewer = host.new_page(), guest.new_page()
            pid = join(publisher, site.url, room, token(room, "dr", "host", "Dr P"), PUBLISHER)
            viewer_role = Role(audio=False, video_slots=1, audio_slots=1)
            join(viewer, site.url, room, token(room, "pat", "host", "Pat"), viewer_role, pid)
            wait_decoding(viewer, pid)
            start_sampler(viewer, pid)
            net.cap_downlink(CAP_KBPS)
            time.sleep(CAPPED_S)
            got = samples(viewer.evaluate(STOP))

    last = [s for s in got if s.t >= got[-1].t - LAST_S]
    widths = sorted({s.width for s in last if s.width})
    decoded = last[-1].frames_decoded - last[0].frames_decoded
    frozen = freeze_ratio(last)
    print(f"\nlast {LAST_S} s at {CAP_KBPS} kbit/s: widths {widths}, {decoded} frames decoded, "
          f"freeze ratio {frozen}, {len(got)} samples")  # fmt: skip
    assert widths and max(widths) < FULL[0], f"still receiving {widths} wide frames"
    assert decoded >= 5 * LAST_S, f"only {decoded} frames decoded in the last {LAST_S} s"
    assert open_stall(last) == 0.0, "the video stopped"
    assert frozen is not None and frozen < 0.2, f"frozen {frozen:.0%} of the time"


def test_the_lab_caps_and_drops_the_guests_downlink_and_undoes_it() -> None:
    """The knobs bench/netlab.py turns mid-call: a tbf cap on the host's end of the
    veth (changed in place) and a random-loss rule in the namespace."""
    need_root()
    with lab() as net:
        net.cap_downlink(500)
        assert "tbf" in sh("tc", "qdisc", "show", "dev", net.host_link)
        assert "rate 500Kbit" in sh("tc", "qdisc", "show", "dev", net.host_link)
        net.cap_downlink(3000)
        assert "rate 3Mbit" in sh("tc", "qdisc", "show", "dev", net.host_link)
        net.cap_downlink(None)
        assert "tbf" not in sh("tc", "qdisc", "show", "dev", net.host_link)
        net.downlink_loss(5)
        rules = net.inside("iptables", "-w", "-S", "INPUT")
        assert "-m statistic --mode random --probability 0.04999" in rules and "-j DROP" in rules
        net.downlink_loss(0)
        assert "statistic" not in net.inside("iptables", "-w", "-S", "INPUT")
