"""Media on a valid ICE pair selects it (sfu.transport.ice.IceConnection.foreign_media):
Chromium switches to a restarted path and sends on it before its next check carries
USE-CANDIDATE (up to 2.5 s later); the SFU must not drop that media meanwhile. Real
aioice agents over loopback UDP; the client agent checks but never nominates."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aioice import stun
from aioice.ice import CandidatePair

from sfu.packet.counters import Counters
from sfu.transport.ice import IceConnection, PortAllocator
from tests.sfu_live import eventually

SRTP_LIKE = bytes([0x80, 96]) + bytes(30)  # the first byte is what the demultiplexer reads


class NoNomination(IceConnection):
    """A controlling agent that checks pairs but does not nominate one (yet)."""

    def build_request(self, pair: CandidatePair, nominate: bool) -> stun.Message:
        return super().build_request(pair, nominate=False)


def agent(cls: type[IceConnection], received: list[bytes], **kwargs: Any) -> IceConnection:
    return cls(
        addresses=["127.0.0.1"],
        ports=PortAllocator(None),
        counters=Counters(),
        buffer_bytes=1 << 16,
        on_srtp=received.append,
        **kwargs,
    )


async def paired(client: IceConnection, sfu: IceConnection) -> None:
    await client.gather_candidates()
    await sfu.gather_candidates()
    for here, there in ((client, sfu), (sfu, client)):
        here.remote_username, here.remote_password = there.local_username, there.local_password
        for candidate in there.local_candidates:
            await here.add_remote_candidate(candidate)
        await here.add_remote_candidate(None)


def succeeded(ice: IceConnection) -> bool:
    return any(p.state == CandidatePair.State.SUCCEEDED for p in ice._check_list)


async def test_media_from_a_valid_pair_that_was_not_nominated_selects_it() -> None:
    got: list[bytes] = []
    client, sfu = agent(NoNomination, [], controlling=True), agent(IceConnection, got)
    await paired(client, sfu)
    tasks = [asyncio.ensure_future(client.connect()), asyncio.ensure_future(sfu.connect())]
    try:
        await eventually(lambda: succeeded(client) and succeeded(sfu), 5, "both checked")
        assert sfu.selected is None, "nobody nominated"
        pair = next(p for p in client._check_list if p.state == CandidatePair.State.SUCCEEDED)
        pair.protocol.transport.sendto(SRTP_LIKE, pair.remote_addr)
        await eventually(lambda: got == [SRTP_LIKE], 5, "the media is taken")
        client_addr = (pair.local_candidate.host, pair.local_candidate.port)
        assert sfu.selected is not None and sfu.selected[1] == client_addr
        assert sfu._nominated[1].remote_addr == sfu.selected[1], "consent checks go there"
        assert sfu.counters.foreign_source == 0
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await client.close()
        await sfu.close()


async def test_media_from_an_address_without_a_valid_pair_is_dropped() -> None:
    got: list[bytes] = []
    client, sfu = agent(NoNomination, [], controlling=True), agent(IceConnection, got)
    await paired(client, sfu)
    task = asyncio.ensure_future(sfu.connect())  # the client never checks: no valid pair
    try:
        await asyncio.sleep(0.3)
        protocol, there = client._protocols[0], sfu.local_candidates[0]
        for _ in range(5):
            protocol.transport.sendto(SRTP_LIKE, (there.host, there.port))
        await eventually(lambda: sfu.counters.foreign_source == 5, 5, "counted as foreign")
        assert got == [] and sfu.selected is None
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await client.close()
        await sfu.close()
