"""metadata.managedFields as the kube-apiserver writes them: which manager last set which fields.

Every field set is built one way, from paths: "f:spec|f:containers|k:{"name":"app"}|f:image" is
the nested {"f:spec": {"f:containers": {"k:{...}": {"f:image": {}}}}}. Segments are split on "|",
not ".", so that keys containing dots (labels, annotations) stay intact. Keys keep the order of
their first path, which fixes the bytes of the encoded object.
"""

from __future__ import annotations

from typing import Any


def field_set(*paths: str, into: dict[str, Any] | None = None) -> dict[str, Any]:
    """The field set of paths; with into, those paths added to an existing set (in place)."""
    root: dict[str, Any] = {} if into is None else into
    for path in paths:
        node = root
        for seg in path.split("|"):
            node = node.setdefault(seg, {})
    return root


def managed_entry(
    manager: str, time: str, fields: dict[str, Any], *, subresource: str | None = None
) -> dict[str, Any]:
    """One managedFields entry: an Update by manager at time (RFC3339), of fields."""
    entry: dict[str, Any] = {
        "manager": manager,
        "operation": "Update",
        "apiVersion": "v1",
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }
    if subresource is not None:
        entry["subresource"] = subresource
    return entry
