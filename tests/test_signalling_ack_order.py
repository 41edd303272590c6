"""An ack says the change is done: the sender hears it only once the change is stored.

The coordinator's commit is held open here (wrapped, the real one still
writes), so the order of frames on the host's socket shows whether the ack
went out before the write.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cluster.roomstate import Change
from signalling.config import Config
from signalling.keys import CLUSTER
from tests.conftest import CLUSTER_SECRET, Connect, join_host, knock_guest, make_config


@pytest.fixture(params=["one machine", "redis"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    """Both coordinators: the file-backed one of one machine and the Redis-backed one."""
    if request.param == "one machine":
        return make_config(tmp_path)
    redis = request.getfixturevalue("redis_server")
    return make_config(tmp_path, redis_url=redis.url, cluster_secret=CLUSTER_SECRET)


async def test_an_admit_ack_waits_for_its_change_to_be_stored(
    client: Any, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = await join_host(connect)
    _, gid = await knock_guest(connect, "Pat")
    assert (await host.next("knock"))["participant"]["id"] == gid
    cluster = client.app[CLUSTER]
    store = cluster.commit
    entered, gate = asyncio.Event(), asyncio.Event()

    async def held_once(change: Change | None, announce: Any) -> None:
        if not entered.is_set():  # only the admit's change is held
            entered.set()
            await gate.wait()
        await store(change, announce)

    monkeypatch.setattr(cluster, "commit", held_once)
    await host.send({"type": "admit", "participant_ids": [gid], "id": "a1"})
    await asyncio.wait_for(entered.wait(), 5)
    _, later = await knock_guest(connect, "Sam")  # stored at once: its frame reaches the host
    assert (await host.next("knock"))["participant"]["id"] == later
    assert not [m for m in host.messages if m.get("re") == "a1"], "ack before the change was stored"
    gate.set()
    ack = await host.next("ack", re="a1")
    assert ack["admitted"] == [gid]
