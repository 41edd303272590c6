"""The WorkerPool with two real worker processes: a room over both, the relay, breakouts
across workers, consistent slots and speakers, bad frames, and failover."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from functools import partial

import pytest

from sfu.control import WORKER_LOST, MediaError
from sfu.packet.rtp import parse_rtp
from sfu.workers import rpc
from tests.pool_live import Reoffering, handle, running_pool
from tests.servers import free_port
from tests.sfu_live import Pump, eventually
from tests.synthetic_peer import OPUS_PT, VP8_PT, SyntheticPeer

pytestmark = pytest.mark.slow


def payloads(peer: SyntheticPeer, kind: str | None = None, start: int = 0) -> list[bytes]:
    """Payloads of what `peer` received (on its `kind` slots), in arrival order."""
    found = []
    for packet in peer.sink.rtp[start:]:
        h = parse_rtp(packet)
        if kind is None or h.payload_type == (OPUS_PT if kind == "audio" else VP8_PT):
            found.append(packet[h.payload_offset : h.payload_offset + h.payload_length])
    return found


def frames(pump: Pump) -> set[bytes]:
    """The first packets of the video frames a pump sent: their bodies are random."""
    return {p for p in pump.payloads if p[:1] == b"\x90"}


def received_over(client: Reoffering, count: int) -> bool:
    return bool(client.peer.transport.received > count)


async def test_a_stream_relayed_to_another_worker_arrives_byte_identical() -> None:
    async with running_pool(max_participants=2) as (pool, events):
        clients = [
            Reoffering(pool, events, pid, audio_slots=1, video_slots=1, decrypt_every=1)
            for pid in ("near", "far")
        ]
        publisher = Reoffering(pool, events, "pub", audio=True, video=True)
        try:
            await publisher.join()
            for client in clients:
                await client.join()
            assert {p: s.worker for p, s in pool.seats.items()} == {"pub": 0, "near": 0, "far": 1}
            pump = Pump(publisher.peer).start()
            near, far = clients[0].peer, clients[1].peer
            await eventually(
                lambda: len(payloads(far, "video")) > 60 and len(payloads(far, "audio")) > 20,
                10,
                "video and audio across the relay",
            )
            await pump.stop()
            for kind in ("audio", "video"):
                relayed = payloads(far, kind)
                assert set(relayed) <= pump.payloads, "every relayed payload is the publisher's"
                local = payloads(near, kind)
                start = local.index(relayed[0])
                common = min(len(relayed), len(local) - start)
                assert relayed[:common] == local[start : start + common]
            stats = pool.stats()
            assert stats["relay_groups"] == 1
        finally:
            for client in [publisher, *clients]:
                await client.close()
        await eventually(lambda: pool.stats()["relay_rtp_out"] > 0, 3, "relay counters reported")


async def test_slots_and_the_active_speaker_agree_on_both_workers() -> None:
    async with running_pool(max_participants=2) as (pool, events):
        talkers = [Reoffering(pool, events, f"t{i}", audio=True, video=True) for i in range(2)]
        viewers = [
            Reoffering(pool, events, f"v{i}", audio_slots=1, video_slots=1) for i in range(2)
        ]
        order = [talkers[0], viewers[0], talkers[1], viewers[1]]
        pumps: list[Pump] = []
        try:
            for client in order:
                await client.join()
            assert [pool.seats[c.pid].worker for c in order] == [0, 0, 1, 1]
            loud, quiet = Pump(talkers[0].peer, level=20), Pump(talkers[1].peer, level=127)
            pumps = [loud.start(), quiet.start()]

            def shown(kind: str) -> set[str | None]:
                return {(events.who(v.pid, kind) or [None])[0] for v in viewers}

            await eventually(lambda: shown("video") == {"t0"}, 10, "both viewers see t0")
            await eventually(lambda: ("r", "main", "t0") in events.speakers, 10, "t0 speaks")
            loud.level, quiet.level = 127, 20  # t1, on the other worker, speaks now
            await eventually(lambda: shown("video") == {"t1"}, 10, "both viewers switch to t1")
            await eventually(lambda: events.speakers[-1] == ("r", "main", "t1"), 10, "t1 speaks")
            changes = [s for s in events.speakers if s[0] == "r"]
            assert all(a != b for a, b in itertools.pairwise(changes)), changes
        finally:
            for pump in pumps:
                await pump.stop()
            for client in order:
                await client.close()


async def test_a_breakout_move_switches_media_across_workers() -> None:
    async with running_pool(max_participants=2) as (pool, events):
        ann = Reoffering(pool, events, "ann", audio=True, video=True)
        viewer = Reoffering(pool, events, "viewer", audio_slots=1, video_slots=2, decrypt_every=1)
        ben = Reoffering(pool, events, "ben", audio=True, video=True)
        pumps: list[Pump] = []
        try:
            for client in (ann, viewer, ben):
                await client.join()
            assert pool.seats["ben"].worker == 1 and pool.seats["viewer"].worker == 0
            pumps = [Pump(ann.peer).start(), Pump(ben.peer).start()]

            def shown() -> set[str | None]:
                return set(events.who("viewer", "video")) - {None}

            await eventually(lambda: shown() == {"ann", "ben"}, 10, "both in the main room")
            await pool.move("ben", "b1")
            await eventually(lambda: shown() == {"ann"}, 5, "ben left for the breakout")
            await pool.move("viewer", "b1")
            await eventually(lambda: shown() == {"ben"}, 5, "the viewer followed ben")
            count = len(viewer.peer.sink.rtp)
            await eventually(
                lambda: len(set(payloads(viewer.peer, start=count)) & frames(pumps[1])) > 10,
                5,
                "ben's video reaches the viewer from the other worker",
            )
            mark = len(viewer.peer.sink.rtp)
            await eventually(lambda: len(viewer.peer.sink.rtp) > mark + 60, 5, "more media")
            assert not set(payloads(viewer.peer, start=mark)) & frames(pumps[0]), "ann is gone"
            assert pool.routes.serving(("r", "b1")) == frozenset({0, 1})
        finally:
            for pump in pumps:
                await pump.stop()
            for client in (ann, viewer, ben):
                await client.close()


async def test_bad_frames_and_messages_leave_the_worker_and_the_pool_serving() -> None:
    async with running_pool(max_participants=2) as (pool, events):
        worker = handle(pool, 0)
        worker.conn.write_raw(b"\x00\x00\x00\x03\xc1\xc1\xc1")  # not msgpack
        worker.conn.write_raw(rpc.frame([0, 99, "explode", []]))  # unknown method
        worker.conn.write_raw(rpc.frame([0, 98, "open", [1, 2]]))  # bad parameters
        worker.conn.write_raw(rpc.frame([2, "relay_out", ["x"]]))  # bad notification
        worker.conn.write_raw(rpc.frame({"a": 1}))  # type: ignore[arg-type]
        client = Reoffering(pool, events, "p", audio_slots=1)
        try:
            await client.join()
            assert await worker.request("ping") > 0
            await eventually(
                lambda: (
                    worker.load.get("stats", {}).get("rpc_bad_frames", 0) >= 2
                    and worker.load["stats"]["rpc_bad_messages"] >= 3
                ),
                3,
                "the worker counted them",
            )
            assert worker.ready and pool.stats()["workers_lost"] == 0
            for method, params in (("event", ["explode", []]), ("streams", [1, 2]), ("?", [])):
                pool.worker_notification(worker, method, params)  # as if the worker sent it
            assert pool.stats_book.bad_messages == 3 and pool.live() == [worker, handle(pool, 1)]
        finally:
            await client.close()


async def test_a_killed_worker_is_replaced_and_its_participants_get_media_back() -> None:
    async with running_pool(max_participants=2) as (pool, events):
        pub = Reoffering(pool, events, "pub", audio=True, video=True)
        near = Reoffering(pool, events, "near", audio_slots=1, video_slots=1)
        far = Reoffering(pool, events, "far", audio_slots=1, video_slots=1)
        pumps: list[Pump] = []
        try:
            for client in (pub, near, far):
                await client.join()
            pumps.append(Pump(pub.peer).start())
            await eventually(lambda: far.peer.transport.received > 30, 10, "media across the relay")
            killed = time.monotonic()
            handle(pool, 0).signal(signal.SIGKILL)  # pub and near were on worker 0
            await eventually(lambda: "pub" in events.closed_at, 3, "the loss noticed")
            assert events.closed_at["pub"] - killed < 3.0
            assert ("near", WORKER_LOST) in events.closed
            assert not any(pid == "far" for pid, _ in events.closed)
            await asyncio.wait_for(pub.reoffered.wait(), 5)
            pumps.append(Pump(pub.peer).start())
            for client in (near, far):
                got = client.peer.transport.received
                await eventually(
                    partial(received_over, client, got + 30),
                    killed + 5 - time.monotonic(),
                    f"media back at {client.pid}",
                )
            assert time.monotonic() - killed < 5.0
            await eventually(lambda: handle(pool, 0).ready, 10, "the worker restarted")
            stats = pool.stats()
            assert stats["worker_restarts"] == 1 and stats["workers_lost"] == 1
            await pool.open("r", "main", "late")  # the restarted worker takes people again
            assert pool.seats["late"].worker == 0
        finally:
            for pump in pumps:
                await pump.stop()
            for client in (pub, near, far):
                await client.close()


async def test_a_hung_worker_is_noticed_by_its_heartbeat_within_3_s() -> None:
    async with running_pool(max_participants=2) as (pool, events):
        client = Reoffering(pool, events, "p", audio_slots=1)
        late = SyntheticPeer(audio_slots=1)
        try:
            await client.join()
            await pool.open("r", "main", "late")
            assert pool.seats["late"].worker == 0
            stopped = time.monotonic()
            handle(pool, 0).signal(signal.SIGSTOP)
            offer = asyncio.ensure_future(pool.offer("late", await late.offer()))
            await eventually(lambda: "p" in events.closed_at, 4, "the hang noticed")
            assert events.closed_at["p"] - stopped < 3.0
            assert pool.seats["p"].worker == pool.seats["late"].worker == 1
            with pytest.raises(MediaError) as lost:
                await offer  # it was with the hung worker: the client offers again
            assert lost.value.code == "unavailable"
            await asyncio.wait_for(client.reoffered.wait(), 5)
        finally:
            late.close()
            await client.close()


async def test_a_precall_echo_and_closing_a_room_work_through_the_pool() -> None:
    async with running_pool(max_participants=1) as (pool, events):
        echo = SyntheticPeer(audio=True, video=True, audio_slots=1, video_slots=1, decrypt_every=1)
        members = [Reoffering(pool, events, f"m{i}", audio_slots=1) for i in range(2)]
        try:
            await pool.open_precall("pre")
            await echo.connect(await pool.offer("pre", await echo.offer()))
            pump = Pump(echo).start()
            await eventually(lambda: events.precall, 5, "pre-call statistics forwarded")
            await eventually(lambda: len(echo.sink.rtp) > 20, 5, "own media echoed")
            await pump.stop()
            for member in members:
                await member.join("visit")
            assert {pool.seats[m.pid].worker for m in members} == {0, 1}
            await pool.open("visit", "main", "pre")  # from the pre-call test into the visit
            assert not pool.seats["pre"].precall
            await pool.close_room("visit")
            assert not pool.seats and not pool.routes.plans
            await eventually(
                lambda: sum(h.load.get("stats", {}).get("transports", 9) for h in pool.live()) == 0,
                3,
                "both workers closed every transport",
            )
        finally:
            echo.close()
            for member in members:
                await member.close()


async def test_in_single_port_mode_each_worker_takes_its_own_port_base_plus_index() -> None:
    base = free_port()
    async with running_pool(max_participants=1, rtc_udp_port=base) as (pool, events):
        publisher = Reoffering(pool, events, "pub", audio=True, video=True)
        viewer = Reoffering(pool, events, "viewer", audio_slots=1, video_slots=1)
        try:
            await publisher.join()
            await viewer.join()
            assert {p: s.worker for p, s in pool.seats.items()} == {"pub": 0, "viewer": 1}
            ports = {}
            for client in (publisher, viewer):
                answer = client.peer.answer
                assert answer is not None
                ports[client.pid] = {c.port for c in answer.media[0].ice_candidates}
            assert ports == {"pub": {base}, "viewer": {base + 1}}
            pump = Pump(publisher.peer).start()
            await eventually(lambda: received_over(viewer, 50), 10, "media over both ports")
            await pump.stop()
        finally:
            for client in (publisher, viewer):
                await client.close()
