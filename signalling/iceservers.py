"""The ICE servers one participant is given in `welcome`: the static list
(VISITROOM_ICE_SERVERS) and, with VISITROOM_TURN_URLS, a TURN credential of its own."""

from __future__ import annotations

from common import turn
from signalling.config import Config


def ice_servers_for(config: Config, user: str, now: float) -> list[dict[str, object]]:
    """`user` names the participant in the TURN username (identity, else participant id).

    The credential lasts `turn_ttl_s` from this welcome (a resumed session gets a new
    one). It is not bound to the token's expiry: the dashboard's host tokens live
    minutes, and coturn checks the expiry again at every allocation refresh, so a
    credential tied to them would cut a relayed visit in the middle.
    """
    servers = [dict(server) for server in config.ice_servers]
    if config.turn_urls and config.turn_secret is not None:
        expires = now + config.turn_ttl_s
        servers.append(turn.ice_server(config.turn_urls, config.turn_secret, user, expires))
    return servers
