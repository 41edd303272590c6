"""DTLS-SRTP keying with aiortc's RTCDtlsTransport, minus its media path.

aiortc's `RTCDtlsTransport` does the DTLS handshake, checks the peer's
fingerprint and derives the SRTP sessions; that is all the SFU wants from
it.  Its own RTP path (await per packet, RtpPacket objects, an RtpRouter
that only catches ValueError) is never fed: `MediaProtocol` hands SRTP
datagrams to the SFU's synchronous fast path and only DTLS records reach the
queue this transport reads.  `KeyingDtlsTransport` reports the moment the
SRTP sessions exist and every state change.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from aiortc.rtcdtlstransport import (
    RTCCertificate,
    RTCDtlsFingerprint,
    RTCDtlsParameters,
    RTCDtlsTransport,
    State,
)
from aiortc.rtcicetransport import RTCIceTransport
from pylibsrtp import Session

KeysHandler = Callable[[Session, Session], None]
StateHandler = Callable[[str], None]

CERTIFICATE_MIN_LIFETIME = datetime.timedelta(days=7)


class KeyingDtlsTransport(RTCDtlsTransport):
    """RTCDtlsTransport that hands its SRTP sessions to the SFU."""

    def __init__(
        self,
        ice: RTCIceTransport,
        certificate: RTCCertificate,
        on_keys: KeysHandler,
        on_state: StateHandler,
    ) -> None:
        super().__init__(ice, [certificate])
        self._on_keys = on_keys
        self._on_state = on_state
        # (key and salt, libsrtp profile) of the sending direction, for
        # sessions of our own (sfu.transport.srtp); None until keyed.
        self.tx_key: tuple[bytes, int] | None = None
        self.rx_key: tuple[bytes, int] | None = None  # of the receiving direction

    def _setup_srtp(self) -> None:
        super()._setup_srtp()
        if self._state == State.FAILED or self._ssl is None:
            return
        selected = self._ssl.get_selected_srtp_profile()
        profile = next((p for p in self._srtp_profiles if p.openssl_profile == selected), None)
        if profile is None:
            return
        # The exporter gives the same bytes for the same label (RFC 5705).
        view = self._ssl.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
        )
        key = profile.get_key_and_salt(view, 1 if self._role == "server" else 0)
        self.tx_key = (key, profile.libsrtp_profile)
        key = profile.get_key_and_salt(view, 0 if self._role == "server" else 1)
        self.rx_key = (key, profile.libsrtp_profile)

    def _set_state(self, state: State) -> None:
        changed = state != self._state
        super()._set_state(state)
        if not changed:
            return
        if state == State.CONNECTED:
            self._on_keys(self._rx_srtp, self._tx_srtp)
        self._on_state(self.state)

    async def start_with(self, role: str, fingerprints: tuple[tuple[str, str], ...]) -> None:
        """Run the handshake as "client" (setup:active) or "server" (passive)."""
        self._set_role(role)
        await self.start(
            RTCDtlsParameters(
                fingerprints=[RTCDtlsFingerprint(algorithm=a, value=v) for a, v in fingerprints],
                role=role,
            )
        )


class CertificateStore:
    """One DTLS certificate shared by all transports, renewed before it expires."""

    def __init__(self) -> None:
        self._certificate = RTCCertificate.generateCertificate()

    def current(self) -> RTCCertificate:
        now = datetime.datetime.now(tz=datetime.UTC)
        if self._certificate.expires - now < CERTIFICATE_MIN_LIFETIME:
            self._certificate = RTCCertificate.generateCertificate()
        return self._certificate
