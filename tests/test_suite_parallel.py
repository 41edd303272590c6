"""The suite's own parallel run (tests/serial.py, scripts/test.sh): xdist workers never
hand out the same port, and the tests that must run alone are marked serial."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.redis_server import RedisServer
from tests.serial import SERIAL_FILES
from tests.servers import _ALL_PORTS, worker_ports


def test_outside_xdist_a_process_picks_from_the_whole_range() -> None:
    assert worker_ports(_ALL_PORTS, {}) == _ALL_PORTS
    one = {"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": "1"}
    assert worker_ports(_ALL_PORTS, one) == _ALL_PORTS


@pytest.mark.parametrize("count", [2, 3, 4])
def test_xdist_workers_pick_from_slices_that_do_not_overlap(count: int) -> None:
    slices = [
        set(worker_ports(_ALL_PORTS, {"PYTEST_XDIST_WORKER": f"gw{n}",
                                      "PYTEST_XDIST_WORKER_COUNT": str(count)}))
        for n in range(count)
    ]  # fmt: skip
    assert all(len(s) >= len(_ALL_PORTS) // count for s in slices)
    assert set.union(*slices) <= set(_ALL_PORTS)
    for n, one in enumerate(slices):
        for other in slices[n + 1 :]:
            assert not one & other


def test_every_serial_file_exists(request: pytest.FixtureRequest) -> None:
    """A renamed lab or image test would otherwise run in the parallel pass unnoticed."""
    tests = request.config.rootpath / "tests"
    assert sorted(n for n in SERIAL_FILES if not (tests / n).is_file()) == []


def test_a_redis_server_of_someone_else_on_our_port_is_not_taken_for_ours(
    tmp_path: Path,
) -> None:
    """Another run's redis-server on the port we picked answers PING too; ours could not
    bind and exited, and a test would then lose its Redis mid-way (seen under xdist)."""
    theirs = RedisServer(tmp_path / "theirs")
    theirs.start()
    try:
        ours = RedisServer(tmp_path / "ours", port=theirs.port)
        with pytest.raises(RuntimeError, match="redis-server exited"):
            ours.start()
    finally:
        theirs.stop()
