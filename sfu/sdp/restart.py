"""What a further offer means for the transport: nothing, an ICE restart, or a new one.

Pure and synchronous.  RFC 8839 4.4.1.1.1: an offer whose ice-ufrag or
ice-pwd differs from the previous one restarts ICE.  Browsers keep their DTLS
association across an ICE restart (same certificate, same fingerprint), so
the SFU keeps its own and only replaces the ICE agent under it.  A changed
fingerprint or a changed session id on the o= line (which stays the same for
every offer of one RTCPeerConnection, RFC 3264 8; an application may give
several connections one certificate) is a new RTCPeerConnection, so a new
DTLS association: a new transport.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sfu.sdp.offer import Offer


@dataclass(frozen=True)
class RemoteIce:
    """What the previous offer said about the client's end of the transport."""

    ufrag: str
    pwd: str
    fingerprints: tuple[tuple[str, str], ...]
    session_id: str = ""

    @classmethod
    def of(cls, offer: Offer) -> RemoteIce:
        fingerprints = _normalized(offer.fingerprints)
        return cls(offer.ice_ufrag, offer.ice_pwd, fingerprints, offer.session_id)


class OfferKind(enum.Enum):
    FIRST = "first"  # no transport yet
    SAME = "same"  # a renegotiation over the same ICE session
    ICE_RESTART = "ice_restart"  # new ICE credentials, the same DTLS association
    NEW_TRANSPORT = "new_transport"  # another RTCPeerConnection: start over


def offer_kind(previous: RemoteIce | None, offer: Offer) -> OfferKind:
    """How `offer` relates to the transport negotiated by the `previous` offer."""
    if previous is None:
        return OfferKind.FIRST
    if _normalized(offer.fingerprints) != previous.fingerprints:
        return OfferKind.NEW_TRANSPORT
    if offer.session_id != previous.session_id:
        return OfferKind.NEW_TRANSPORT
    if (offer.ice_ufrag, offer.ice_pwd) != (previous.ufrag, previous.pwd):
        return OfferKind.ICE_RESTART
    return OfferKind.SAME


def _normalized(fingerprints: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((a.lower(), v.upper()) for a, v in fingerprints))
