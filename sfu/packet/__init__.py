"""Packets on the forwarding path: RTP, RTCP, RTX, key frames, receive statistics, counters.

Pure: bytes in, values out.  Nothing here does I/O or knows about participants.
"""
