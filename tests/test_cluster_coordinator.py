"""The config picks the coordinator: one machine's file-backed one, or the Redis-backed one."""

from __future__ import annotations

from pathlib import Path

from cluster.distributed import RedisCoordinator
from cluster.local import LocalCoordinator
from signalling.app import create_app
from signalling.keys import CLUSTER
from tests.conftest import CLUSTER_SECRET, make_config


def test_one_machine_keeps_its_rooms_in_a_file(tmp_path: Path) -> None:
    cluster = create_app(make_config(tmp_path))[CLUSTER]
    assert isinstance(cluster, LocalCoordinator)
    assert not cluster.multi_node and cluster.healthy


def test_redis_makes_a_node_of_a_cluster(tmp_path: Path) -> None:
    config = make_config(tmp_path, redis_url="redis://127.0.0.1:1/0", cluster_secret=CLUSTER_SECRET)
    cluster = create_app(config)[CLUSTER]
    assert isinstance(cluster, RedisCoordinator)
    assert cluster.multi_node and not cluster.healthy, "unhealthy until the bus answers"
