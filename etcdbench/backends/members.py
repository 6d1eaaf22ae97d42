"""Who an endpoint is: asked of it alone, in whichever API it answers."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from etcdbench.backends.base import Endpoint
from etcdbench.backends.credentials import Credentials
from etcdbench.errors import EtcdError

MEMBER_TIMEOUT_S = 5.0  # per member, when asking an endpoint over HTTP who it is


def describe_member(url: str, credentials: Credentials | None = None) -> dict[str, Any]:
    """One endpoint's `{url, version, member_id, is_leader}`.

    Asked with v3 Maintenance Status; an etcd that does not answer it is asked over HTTP instead
    (`/version`, and `/v2/stats/self` for its id and the leader's). An endpoint that answers neither
    is described with nulls and the `error`.
    """
    from etcdbench.backends.v3 import V3Admin
    from etcdbench.backends.v3.connect import RpcFailed

    member: dict[str, Any] = {"url": url, "version": None, "member_id": None, "is_leader": None}
    v3 = V3Admin(Endpoint((url,), credentials))
    try:
        status = v3.status()
        member["version"] = status.version
        member["member_id"] = f"{status.member:x}"
        member["is_leader"] = status.leader == status.member
        return member
    except EtcdError as exc:
        v3_error = exc.details if isinstance(exc, RpcFailed) else str(exc)
    finally:
        v3.close()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url.rstrip("/") + "/version", timeout=MEMBER_TIMEOUT_S) as r:
            member["version"] = str(json.loads(r.read())["etcdserver"])
    except (OSError, ValueError, KeyError) as exc:
        member["error"] = f"v3 Status: {v3_error}; /version: {exc}"
        return member
    try:  # the v2 API's own stats name the member and say whether it leads
        with opener.open(url.rstrip("/") + "/v2/stats/self", timeout=MEMBER_TIMEOUT_S) as r:
            stats = json.loads(r.read())
        member["member_id"] = str(stats["id"])
        member["is_leader"] = stats.get("state") == "StateLeader"
    except (OSError, ValueError, KeyError):
        pass
    return member
