"""ICE, DTLS and SRTP for one participant: the only place that uses aiortc/aioice private API.

`webrtc.WebRtcTransport` composes `ice.IceConnection` and `dtls.KeyingDtlsTransport`
and hands every decrypted packet to a sink; it knows nothing of producers or rooms.
"""
