"""Carry a client's WebSocket to the node that owns its room, frame by frame."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import WSMsgType, web

from cluster.hop import FORWARDED_HEADER, HOP_HEADER, sign
from cluster.registry import NodeInfo
from signalling.hub import CLOSE_SERVICE_RESTART
from signalling.keys import CLUSTER, CONFIG, HOP_KEY, HTTP

log = logging.getLogger(__name__)


def hop_headers(request: web.Request, client: str) -> dict[str, str]:
    node_id = request.app[CLUSTER].node_id
    return {
        HOP_HEADER: sign(request.app[HOP_KEY], node_id, request.path, client),
        FORWARDED_HEADER: client,
    }


class HopRefused(Exception):
    """The owner node is up but refused our hop: the nodes do not share a cluster secret."""


async def connect_owner(
    request: web.Request, client: web.WebSocketResponse, owner: NodeInfo, address: str
) -> aiohttp.ClientWebSocketResponse | None:
    """A WebSocket to the owner node, or None when it cannot be reached.

    Raises `HopRefused` when the owner answers 403: retrying cannot help then.
    """
    url = owner.url.replace("http", "ws", 1) + request.path
    protocols = [client.ws_protocol] if client.ws_protocol else []
    try:
        return await request.app[HTTP].ws_connect(
            url,
            protocols=protocols,
            headers=hop_headers(request, address),
            max_msg_size=request.app[CONFIG].max_frame_bytes,
            heartbeat=15.0,
            timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
        )
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status == 403:
            log.error(
                "node %s refused this node's hop: do all nodes share VISITROOM_CLUSTER_SECRET?",
                owner.node_id,
            )
            raise HopRefused(owner.node_id) from None
        log.warning("the room's owner node is unreachable: %s", exc)
        return None
    except (aiohttp.ClientError, OSError) as exc:
        log.warning("the room's owner node is unreachable: %s", exc)
        return None


async def proxy_socket(
    client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse
) -> None:
    async with upstream:
        await _pipe(client, upstream)


async def _pipe(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    up = asyncio.create_task(_copy(client, upstream))
    down = asyncio.create_task(_copy(upstream, client))
    done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if down in done:  # the owner closed: pass its code on (abnormal: ask to resume)
        code = upstream.close_code
        await client.close(code=CLOSE_SERVICE_RESTART if code in (None, 1006) else code)
    else:
        await upstream.close()


async def _copy(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for msg in source:
        if msg.type == WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
            return
