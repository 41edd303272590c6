"""The media pipeline of one process: participants, producers, consumers, groups, RTCP feedback.

mediasoup's vocabulary: a `Participant` owns a transport, the `Producer`s it publishes
and the `Consumer`s (receive slots) it subscribes through; a `Group` decides who is
seen and heard; the `Ticker` is the clock.
"""
