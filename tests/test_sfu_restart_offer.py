"""Is a further offer a renegotiation, an ICE restart or a new DTLS association? (pure)"""

from __future__ import annotations

from sfu.sdp.offer import parse_offer
from sfu.sdp.restart import OfferKind, RemoteIce, offer_kind
from tests.sfu_offers import CHROME_OFFER, FINGERPRINT

FIRST = parse_offer(CHROME_OFFER)
PREVIOUS = RemoteIce.of(FIRST)


def kind_of(text: str) -> OfferKind:
    return offer_kind(PREVIOUS, parse_offer(text))


def test_the_first_offer_has_nothing_to_compare_with() -> None:
    assert offer_kind(None, FIRST) == OfferKind.FIRST


def test_the_same_credentials_are_a_renegotiation() -> None:
    assert kind_of(CHROME_OFFER) == OfferKind.SAME
    assert kind_of(CHROME_OFFER.replace("a=sendrecv", "a=sendonly")) == OfferKind.SAME


def test_a_new_ufrag_and_password_restart_ice() -> None:
    text = CHROME_OFFER.replace("a=ice-ufrag:a1B2", "a=ice-ufrag:Zz99")
    text = text.replace("abcdefghijklmnopqrstuvwx", "ABCDEFGHIJKLMNOPQRSTUVWX")
    assert kind_of(text) == OfferKind.ICE_RESTART


def test_a_new_password_alone_restarts_ice() -> None:
    text = CHROME_OFFER.replace("abcdefghijklmnopqrstuvwx", "ABCDEFGHIJKLMNOPQRSTUVWX")
    assert kind_of(text) == OfferKind.ICE_RESTART


def test_a_new_fingerprint_is_a_new_transport_even_with_new_credentials() -> None:
    other = ":".join(["CD"] * 32)
    text = CHROME_OFFER.replace(FINGERPRINT, other)
    assert kind_of(text) == OfferKind.NEW_TRANSPORT
    text = text.replace("a=ice-ufrag:a1B2", "a=ice-ufrag:Zz99")
    assert kind_of(text) == OfferKind.NEW_TRANSPORT


def test_the_fingerprint_is_compared_without_regard_to_case() -> None:
    assert kind_of(CHROME_OFFER.replace(FINGERPRINT, FINGERPRINT.lower())) == OfferKind.SAME


def test_another_session_id_is_another_peer_connection_even_with_the_same_certificate() -> None:
    origin = next(line for line in CHROME_OFFER.splitlines() if line.startswith("o="))
    fields = origin.split(" ")
    other = " ".join([fields[0], fields[1] + "1", *fields[2:]])
    text = CHROME_OFFER.replace(origin, other).replace("a=ice-ufrag:a1B2", "a=ice-ufrag:Zz99")
    assert kind_of(text) == OfferKind.NEW_TRANSPORT


def test_a_new_version_of_the_same_session_is_still_a_restart() -> None:
    origin = next(line for line in CHROME_OFFER.splitlines() if line.startswith("o="))
    fields = origin.split(" ")
    newer = " ".join([*fields[:2], str(int(fields[2]) + 1), *fields[3:]])
    text = CHROME_OFFER.replace(origin, newer).replace("a=ice-ufrag:a1B2", "a=ice-ufrag:Zz99")
    assert kind_of(text) == OfferKind.ICE_RESTART
