"""Finding, starting and stopping a local etcd server."""

from etcdbench.etcd.local import LocalEtcd, etcd_version, find_etcd_binary

__all__ = ["LocalEtcd", "etcd_version", "find_etcd_binary"]
