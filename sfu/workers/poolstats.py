"""The pool's `stats()`: the workers' reports summed, per-worker load, restarts.

Each worker reports about once a second (`sfu.workers.worker.LoadMeter`): its
packet rates, its CPU share, its memory and its `stats()`.  The pool's view
is therefore up to a report interval old.  Counters stay monotonic across a
worker's death: what a lost incarnation last reported is kept in `retired`.

Names (exported by /metrics as ``visitroom_media_<name>``):

* the SFU counters of `sfu.packet.counters` and `sfu.relay.endpoint` (``rtp_out``,
  ``nacks_sent``, ``keyframe_requests``, ``relay_rtp_out``, ...), summed;
* gauges summed over live workers (``transports``, ``producers``,
  ``relay_streams_out``, ...); the loss gauges (``upstream_loss_percent``,
  ``downstream_loss_percent``) and ``joins_wait_max_seconds`` are the worst
  live worker's;
* ``forwarded_pps``, ``received_pps``, ``relay_out_pps``, ``relay_in_pps``
  and ``cpu_percent`` (of one core, summed) of the live workers;
* ``workers``, ``workers_up``, ``worker_restarts``, ``workers_lost``,
  ``placements_over_budget``, ``rpc_bad_frames``, ``rpc_bad_messages``;
* per worker slot i: ``worker<i>_up``, ``worker<i>_participants``,
  ``worker<i>_forwarded_pps``, ``worker<i>_cpu_percent``,
  ``worker<i>_rss_mb``, ``worker<i>_restarts``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sfu.packet.counters import FIELDS
from sfu.relay.endpoint import RELAY_FIELDS
from sfu.workers.supervisor import WorkerLink

COUNTERS = (
    frozenset(FIELDS)
    | frozenset(RELAY_FIELDS)
    | {"relay_nacks_sent", "rpc_bad_frames", "rpc_bad_messages"}
)
WORST = frozenset({"upstream_loss_percent", "downstream_loss_percent", "joins_wait_max_seconds"})
RATES = ("forwarded_pps", "received_pps", "relay_out_pps", "relay_in_pps")


class PoolStats:
    """Counters of the pool and the aggregation of the workers' reports."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.retired: dict[str, float] = {}
        self.restarts = [0] * workers
        self.workers_lost = 0
        self.over_budget = 0
        self.bad_messages = 0

    def lost(self, handle: WorkerLink) -> None:
        """Keep the counters a lost incarnation last reported."""
        self.workers_lost += 1
        reported: Mapping[str, Any] = handle.load.get("stats", {})
        for name, value in reported.items():
            if name in COUNTERS and isinstance(value, int | float):
                self.retired[name] = self.retired.get(name, 0) + value
        self.retired["rpc_bad_frames"] = self.retired.get("rpc_bad_frames", 0) + (
            handle.conn.bad_frames
        )

    def restarted(self, index: int) -> None:
        self.restarts[index] += 1

    def collect(
        self, handles: Sequence[WorkerLink | None], participants: Mapping[int, int]
    ) -> dict[str, float]:
        result: dict[str, float] = dict.fromkeys(COUNTERS, 0)
        result.update(self.retired)
        totals = dict.fromkeys((*RATES, "cpu_percent"), 0.0)
        up = 0
        for index, handle in enumerate(handles):
            live = handle is not None and handle.ready
            load = handle.load if handle is not None and live else {}
            up += live
            self._add(result, load.get("stats", {}))
            result["rpc_bad_frames"] += handle.conn.bad_frames if handle and live else 0
            for rate in RATES:
                totals[rate] += float(load.get(rate, 0.0))
            cpu = 100.0 * float(load.get("cpu", 0.0))
            totals["cpu_percent"] += cpu
            result[f"worker{index}_up"] = int(live)
            result[f"worker{index}_participants"] = participants.get(index, 0)
            result[f"worker{index}_forwarded_pps"] = float(load.get("forwarded_pps", 0.0))
            result[f"worker{index}_cpu_percent"] = cpu
            result[f"worker{index}_rss_mb"] = float(load.get("rss", 0)) / 2**20
            result[f"worker{index}_restarts"] = self.restarts[index]
        result.update(totals)
        result["workers"] = self.workers
        result["workers_up"] = up
        result["worker_restarts"] = sum(self.restarts)
        result["workers_lost"] = self.workers_lost
        result["placements_over_budget"] = self.over_budget
        result["rpc_bad_messages"] += self.bad_messages
        return result

    @staticmethod
    def _add(result: dict[str, float], stats: Mapping[str, Any]) -> None:
        for name, value in stats.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if name in WORST:
                result[name] = max(result.get(name, 0.0), float(value))
            else:
                result[name] = result.get(name, 0) + value
