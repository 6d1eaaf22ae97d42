"""etcdbench/_pb is exactly what proto/generate.py produces, and carries etcd's real wire contract."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from paths import ROOT

PB = ROOT / "etcdbench" / "_pb"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (a dev dependency) is needed to regenerate")
    out = tmp_path / "_pb"
    for _ in range(2):  # twice into the same place: the second run must replace, not accumulate
        proc = subprocess.run(
            [sys.executable, str(ROOT / "proto" / "generate.py"), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    fresh, committed = _tree(out), _tree(PB)
    assert sorted(fresh) == sorted(committed), "run: python proto/generate.py"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"etcdbench/_pb is stale ({stale}); run: python proto/generate.py"


def test_generate_refuses_to_wipe_foreign_files(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (a dev dependency) is needed to regenerate")
    (tmp_path / "notes.txt").write_text("mine")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "refusing" in proc.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_imports_are_package_relative() -> None:
    for path in PB.rglob("*.py*"):
        text = path.read_text()
        assert "from etcd import" not in text and "from k8s import" not in text, path
        assert "import kv_pb2" not in text.replace("from . import kv_pb2", ""), path


def test_etcd_method_paths_and_field_numbers() -> None:
    from etcdbench._pb.etcd import kv_pb2, rpc_pb2, rpc_pb2_grpc

    services = rpc_pb2.DESCRIPTOR.services_by_name
    paths = {f"/{m.containing_service.full_name}/{m.name}" for s in services.values() for m in s.methods}
    assert paths == {
        "/etcdserverpb.KV/Range",
        "/etcdserverpb.KV/Put",
        "/etcdserverpb.KV/DeleteRange",
        "/etcdserverpb.KV/Txn",
        "/etcdserverpb.KV/Compact",
        "/etcdserverpb.Watch/Watch",
        "/etcdserverpb.Maintenance/Status",
        "/etcdserverpb.Maintenance/Defragment",
        "/etcdserverpb.Lease/LeaseGrant",
        "/etcdserverpb.Auth/Authenticate",
    }
    assert {f.name: f.number for f in rpc_pb2.LeaseGrantRequest.DESCRIPTOR.fields} == {"TTL": 1, "ID": 2}
    assert {f.name: f.number for f in rpc_pb2.LeaseGrantResponse.DESCRIPTOR.fields} == {
        "header": 1,
        "ID": 2,
        "TTL": 3,
        "error": 4,
    }
    assert {f.name: f.number for f in rpc_pb2.AuthenticateRequest.DESCRIPTOR.fields} == {
        "name": 1,
        "password": 2,
    }
    assert {f.name: f.number for f in rpc_pb2.AuthenticateResponse.DESCRIPTOR.fields} == {
        "header": 1,
        "token": 2,
    }
    watch = services["Watch"].methods_by_name["Watch"]
    assert watch.client_streaming and watch.server_streaming
    assert hasattr(rpc_pb2_grpc, "KVStub") and hasattr(rpc_pb2_grpc, "WatchStub")

    def nums(message: type) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]

    # Txn, puts only (the preload's batches): etcd's numbers, compare (1) left out
    assert nums(rpc_pb2.TxnRequest) == {"success": 2, "failure": 3}
    assert nums(rpc_pb2.TxnResponse) == {"header": 1, "succeeded": 2, "responses": 3}
    assert nums(rpc_pb2.RequestOp) == {"request_put": 2}
    assert nums(rpc_pb2.ResponseOp) == {"response_put": 2}
    assert nums(rpc_pb2.ResponseHeader) == {"cluster_id": 1, "member_id": 2, "revision": 3, "raft_term": 4}
    assert nums(rpc_pb2.WatchRequest) == {"create_request": 1, "cancel_request": 2, "progress_request": 3}
    assert nums(rpc_pb2.WatchCreateRequest) == {
        "key": 1,
        "range_end": 2,
        "start_revision": 3,
        "progress_notify": 4,
        "filters": 5,
        "prev_kv": 6,
        "watch_id": 7,
        "fragment": 8,
    }
    assert nums(rpc_pb2.WatchResponse) == {
        "header": 1,
        "watch_id": 2,
        "created": 3,
        "canceled": 4,
        "compact_revision": 5,
        "cancel_reason": 6,
        "fragment": 7,
        "events": 11,
    }
    assert nums(rpc_pb2.StatusResponse) == {
        "header": 1,
        "version": 2,
        "dbSize": 3,
        "leader": 4,
        "raftIndex": 5,
        "raftTerm": 6,
        "dbSizeInUse": 9,
        "isLearner": 10,
    }
    assert nums(rpc_pb2.PutRequest)["prev_kv"] == 4
    assert nums(rpc_pb2.RangeResponse) == {"header": 1, "kvs": 2, "more": 3, "count": 4}
    assert nums(rpc_pb2.CompactionRequest) == {"revision": 1, "physical": 2}
    assert nums(kv_pb2.KeyValue) == {
        "key": 1,
        "create_revision": 2,
        "mod_revision": 3,
        "version": 4,
        "value": 5,
        "lease": 6,
    }
    assert nums(kv_pb2.Event) == {"type": 1, "kv": 2, "prev_kv": 3}
    assert kv_pb2.Event.DELETE == 1
    # A prefix watch as the kube-apiserver opens it, byte for byte.
    request = rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(
            key=b"/registry/", range_end=b"/registry0", progress_notify=True, prev_kv=True
        )
    )
    assert request.SerializeToString() == b"\n\x1c\n\n/registry/\x12\n/registry0 \x010\x01"


_GENCODE_FLOOR = re.compile(
    r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),"
)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _pinned_protobuf() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if re.match(r"protobuf\b", d)]
    m = re.fullmatch(r"protobuf==(\d+\.\d+\.\d+)", pin)
    assert m, f"protobuf is pinned exactly, like the other runtime dependencies: {pin!r}"
    return m.group(1)


def test_gencode_keeps_protocs_runtime_check_and_the_pin_passes_it() -> None:
    """generate.py does not rewrite the generated code's runtime floor; the pinned protobuf (the one CI
    installs and tests) is at or above it, so what is declared is what is tested."""
    pinned = _version(_pinned_protobuf())
    floors = set()
    for path in PB.rglob("*_pb2.py"):
        m = _GENCODE_FLOOR.search(path.read_text())
        assert m, f"{path}: no protobuf runtime check"
        floors.add(tuple(int(g) for g in m.groups()))
    assert len(floors) == 1, floors  # one protoc wrote them all
    assert pinned >= floors.pop()


def test_installed_protobuf_is_the_pinned_one() -> None:
    import google.protobuf

    assert google.protobuf.__version__ == _pinned_protobuf()
