"""The relay between SFU workers: datagram format and UDP endpoint, SRTP between machines,
streams of other workers seen here, and the pool's book of routes.
"""
