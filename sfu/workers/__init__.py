"""The process model: SFU worker processes, the pool that drives them over RPC, placement.

Pool side: `pool`, `fleet`, `supervisor`, `remote`, `liveness`, `placement`, `poolstats`.
Worker side: `worker` (``python -m sfu.workers.worker``), `session`.  Both: `rpc`, `rpcauth`, `api`.
"""
