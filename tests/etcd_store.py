"""Both key spaces of an etcd, read and written without etcdbench's code: what tests of safety compare
before and after a run (every key's value, create and mod revision)."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import grpc

from etcdbench._pb.etcd import rpc_pb2, rpc_pb2_grpc

Snapshot = dict[str, tuple[bytes, int, int]]  # key -> (value, created, modified)
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Store:
    """Both key spaces of one etcd, read and written without etcdbench's code."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._channel = grpc.insecure_channel(url.split("://", 1)[1])
        self._kv = rpc_pb2_grpc.KVStub(self._channel)
        self.seeded: set[str] = set()  # the foreign keys a test made: gone after it
        self.seeded_v2: set[str] = set()

    def close(self) -> None:
        for key in self.seeded:
            self._kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key.encode()), timeout=10)
        for key in self.seeded_v2:
            req = urllib.request.Request(f"{self.url}/v2/keys{key}", method="DELETE")
            with contextlib.suppress(urllib.error.HTTPError):
                NO_PROXY.open(req, timeout=10).close()
        self._channel.close()

    def put(self, key: str, value: bytes) -> None:
        self._kv.Put(rpc_pb2.PutRequest(key=key.encode(), value=value), timeout=10)
        self.seeded.add(key)

    def v3(self) -> tuple[int, Snapshot]:
        """(store revision, every key) of the v3 store."""
        resp = self._kv.Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0"), timeout=10)
        keys = {kv.key.decode(): (kv.value, kv.create_revision, kv.mod_revision) for kv in resp.kvs}
        return int(resp.header.revision), keys

    def revision(self) -> int:
        return self.v3()[0]

    def v2_put(self, key: str, value: str) -> None:
        body = urllib.parse.urlencode({"value": value}).encode()
        req = urllib.request.Request(f"{self.url}/v2/keys{key}", data=body, method="PUT")
        NO_PROXY.open(req, timeout=10).close()
        self.seeded_v2.add(key)

    def v2_index(self) -> int:
        with NO_PROXY.open(f"{self.url}/v2/keys/", timeout=10) as r:
            return int(r.headers["X-Etcd-Index"])

    def v2(self) -> Snapshot:
        """Every node of the v2 store, directories included (value b"<dir>")."""
        with NO_PROXY.open(f"{self.url}/v2/keys/?recursive=true", timeout=10) as r:
            root = json.loads(r.read())["node"]
        nodes: Snapshot = {}

        def walk(node: dict[str, Any]) -> None:
            for child in node.get("nodes", ()):
                value = b"<dir>" if child.get("dir") else str(child["value"]).encode()
                nodes[child["key"]] = (value, child["createdIndex"], child["modifiedIndex"])
                walk(child)

        walk(root)
        return nodes

    def both(self) -> tuple[Snapshot, Snapshot]:
        return self.v3()[1], self.v2()
