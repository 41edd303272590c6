"""sfu.policy.bitrate: REMB caps by room size and their config syntax."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.policy.bitrate import (
    DEFAULT_REMB_TABLE,
    SIMULCAST_CAP,
    cap_for,
    parse_table,
    publisher_cap,
)


@pytest.mark.parametrize(
    ("room_size", "cap"),
    [
        (0, 1_500_000),
        (1, 1_500_000),
        (2, 1_500_000),
        (3, 1_000_000),
        (4, 1_000_000),
        (5, 700_000),
        (8, 700_000),
        (9, 500_000),
        (20, 500_000),
        (21, 300_000),
        (200, 300_000),
    ],
)
def test_the_default_table_caps_by_room_size(room_size: int, cap: int) -> None:
    assert cap_for(room_size) == cap
    assert cap_for(room_size, DEFAULT_REMB_TABLE) == cap


def test_the_config_string_parses_into_a_table() -> None:
    table = parse_table("2:1500000,4:1000000,20:500000,*:300000")
    assert table == ((2, 1_500_000), (4, 1_000_000), (20, 500_000), (None, 300_000))
    assert cap_for(10, table) == 500_000
    assert cap_for(21, table) == 300_000


def test_spaces_and_underscores_are_allowed() -> None:
    assert parse_table(" 2 : 1_500_000 , * : 300_000 ") == ((2, 1_500_000), (None, 300_000))


def test_a_table_of_only_a_wildcard_caps_every_room() -> None:
    table = parse_table("*:800000")
    assert cap_for(1, table) == cap_for(500, table) == 800_000


def test_without_a_wildcard_larger_rooms_get_the_last_cap() -> None:
    table = parse_table("2:1000,10:500")
    assert cap_for(11, table) == 500


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty entry"),
        ("2:1000,,*:500", "empty entry"),
        ("2=1000", "not 'size:bitrate'"),
        ("two:1000", "not an integer"),
        ("2:1.5M", "not an integer"),
        ("2:0", "not positive"),
        ("0:1000", "not positive"),
        ("-3:1000", "not positive"),
        ("4:1000,2:2000", "must increase"),
        ("4:1000,4:2000", "must increase"),
        ("*:300,4:1000", "must be the last"),
        ("*:300,*:200", "must be the last"),
    ],
)
def test_bad_tables_are_refused_with_a_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_table(text)


def test_a_negative_room_size_or_an_empty_table_is_an_error() -> None:
    with pytest.raises(ValueError):
        cap_for(-1)
    with pytest.raises(ValueError):
        cap_for(3, ())


rows = st.lists(st.tuples(st.integers(1, 500), st.integers(1, 10**8)), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(rows, st.booleans(), st.integers(0, 600))
def test_any_valid_table_round_trips_and_caps_by_its_first_fitting_row(
    raw_rows: list[tuple[int, int]], wildcard: bool, room_size: int
) -> None:
    sizes = sorted({s for s, _ in raw_rows})
    caps = [c for _, c in raw_rows]
    table: list[tuple[int | None, int]] = list(zip(sizes, caps, strict=False))
    if wildcard:
        table.append((None, 123))
    text = ",".join(f"{'*' if s is None else s}:{c}" for s, c in table)
    parsed = parse_table(text)
    assert parsed == tuple(table)
    fitting = [c for s, c in table if s is None or room_size <= s]
    assert cap_for(room_size, parsed) == (fitting[0] if fitting else table[-1][1])


def test_a_simulcast_publisher_may_send_all_its_layers_whatever_the_room_size() -> None:
    """Found in the network lab: a 1:1 visit's 1.5 Mbit/s cap made Chromium keep its
    720p layer off, so the stage at 3 Mbit/s showed 640 wide frames."""
    assert publisher_cap(2, simulcast=False) == 1_500_000
    assert publisher_cap(2, simulcast=True) == SIMULCAST_CAP >= 3_200_000
    assert publisher_cap(200, simulcast=True) == SIMULCAST_CAP
    generous = parse_table("*:8000000")
    assert publisher_cap(5, simulcast=True, table=generous) == 8_000_000  # never lowered
