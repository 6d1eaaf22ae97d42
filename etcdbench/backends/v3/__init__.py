"""etcd's v3 API over gRPC, with messages generated from proto/etcd: connect.py (channel, TLS, auth
token, client choice, errors), admin.py (the Admin calls and the reads), watch.py (watches
multiplexed on one stream), backend.py (V3Backend: the load, and the Admin calls it inherits)."""

from etcdbench.backends.v3.admin import V3Admin, prefix_range_end
from etcdbench.backends.v3.backend import MAX_TXN_OPS, PUT_PATH, V3Backend
from etcdbench.backends.v3.connect import addresses, grpc_target, v3_client
from etcdbench.backends.v3.watch import WATCH_PATH

__all__ = [
    "MAX_TXN_OPS",
    "PUT_PATH",
    "WATCH_PATH",
    "V3Admin",
    "V3Backend",
    "addresses",
    "grpc_target",
    "prefix_range_end",
    "v3_client",
]
