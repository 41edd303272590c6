"""Per-publisher video bitrate caps by room size, sent to publishers as REMB.

In a bigger room each subscriber shows each publisher in a smaller tile and
the SFU's uplink budget is shared by more streams, so publishers are asked
to send less.  A table maps "rooms of up to N people" to a cap in bits per
second; the last row has N = None and covers every larger room.

The config form is ``"2:1500000,4:1000000,20:500000,*:300000"``.

The table is for publishers of a single stream, which every subscriber
receives whole. A publisher sending simulcast is capped at the table's value
or `SIMULCAST_CAP`, whichever is higher: each subscriber gets only the layer
it can use (sfu.policy.allocation), the layers nobody needs are paused
(`publish_layers`), and the three layers of a 720p camera need about 0.15 +
0.5 + 2.5 Mbit/s, which a room-size cap of 1.5 Mbit/s would cut to two.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_REMB_TABLE",
    "SIMULCAST_CAP",
    "RembTable",
    "cap_for",
    "parse_table",
    "publisher_cap",
]

RembTable = tuple[tuple[int | None, int], ...]

SIMULCAST_CAP = 4_000_000

DEFAULT_REMB_TABLE: RembTable = (
    (2, 1_500_000),
    (4, 1_000_000),
    (8, 700_000),
    (20, 500_000),
    (None, 300_000),
)


def parse_table(text: str) -> RembTable:
    """Parse ``"N:bps,...,*:bps"``; raises ValueError with the offending entry.

    Sizes must be positive and strictly increasing, caps positive, and ``*``
    (any size) may only come last.  Without a ``*`` row, rooms larger than
    the last size get the last row's cap (see `cap_for`).
    """
    rows: list[tuple[int | None, int]] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            raise ValueError(f"empty entry in REMB table {text!r}")
        if rows and rows[-1][0] is None:
            raise ValueError(f"'*' must be the last entry of REMB table {text!r}")
        size_text, sep, cap_text = entry.partition(":")
        if not sep:
            raise ValueError(f"REMB table entry {entry!r} is not 'size:bitrate'")
        size = None if size_text.strip() == "*" else _positive(size_text, entry)
        if size is not None and rows and size <= (rows[-1][0] or 0):
            raise ValueError(f"REMB table sizes must increase: {entry!r}")
        rows.append((size, _positive(cap_text, entry)))
    return tuple(rows)


def _positive(text: str, entry: str) -> int:
    stripped = text.strip()
    try:
        value = int(stripped)
    except ValueError:
        message = f"REMB table entry {entry!r}: {stripped!r} is not an integer"
        raise ValueError(message) from None
    if value <= 0:
        raise ValueError(f"REMB table entry {entry!r}: {value} is not positive")
    return value


def cap_for(room_size: int, table: RembTable = DEFAULT_REMB_TABLE) -> int:
    """The bitrate cap for a room of `room_size` people (0 counts as the smallest room)."""
    if room_size < 0:
        raise ValueError(f"room size {room_size} is negative")
    if not table:
        raise ValueError("empty REMB table")
    for size, cap in table:
        if size is None or room_size <= size:
            return cap
    return table[-1][1]


def publisher_cap(room_size: int, simulcast: bool, table: RembTable = DEFAULT_REMB_TABLE) -> int:
    """The REMB cap of one publisher: the table's, raised to `SIMULCAST_CAP` for simulcast."""
    cap = cap_for(room_size, table)
    return max(cap, SIMULCAST_CAP) if simulcast else cap
