"""SDP: the client's offer read with limits, what is accepted of it, the answer written back.

Pure.  aiortc's SDP parser is used by `offer.py` after our own limits.
"""
