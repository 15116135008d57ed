"""Production plans as JSON documents (the API's form and the stores' rows), and back.

>>> from datetime import UTC, datetime
>>> from tvilling.planning.production import PlannedOperation, ProductionPlan
>>> t = datetime(2026, 3, 2, 8, tzinfo=UTC)
>>> plan = ProductionPlan("p1", t, "line-1", (PlannedOperation("po-1", 0, "m1", t, t, 5, 1500.0),), (), {"x": 1.0})
>>> plan_from_json(plan_to_json(plan)) == plan
True
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tvilling.planning.production import PlannedOperation, ProductionPlan

DOWNTIME_TIMES = ("start", "end")


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def when(text: Any) -> datetime:
    if isinstance(text, datetime):
        return text.astimezone(UTC)
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)


def operation_to_json(o: PlannedOperation) -> dict[str, Any]:
    return {"order": o.order, "op": o.op, "machine": o.machine, "start": iso(o.start), "end": iso(o.end),
            "quantity": o.quantity, "speed_rpm": o.speed_rpm}


def downtime_to_json(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in d.items()}


def plan_to_json(plan: ProductionPlan) -> dict[str, Any]:
    """The plan as plain JSON types (ISO times with ``Z``)."""
    return {"id": plan.id, "created": iso(plan.created), "line": plan.line, "previous": plan.previous,
            "reason": plan.reason, "kpis": dict(plan.kpis),
            "operations": [operation_to_json(o) for o in plan.operations],
            "downtimes": [downtime_to_json(d) for d in plan.downtimes]}


def plan_from_json(doc: Mapping[str, Any]) -> ProductionPlan:
    """The plan a document of :func:`plan_to_json` holds (downtime times as datetimes)."""
    ops = tuple(PlannedOperation(str(o["order"]), int(o["op"]), str(o["machine"]), when(o["start"]), when(o["end"]),
                                 int(o["quantity"]), float(o["speed_rpm"])) for o in doc["operations"])
    downs = tuple({k: when(v) if k in DOWNTIME_TIMES else v for k, v in d.items()} for d in doc.get("downtimes", ()))
    return ProductionPlan(id=str(doc["id"]), created=when(doc["created"]), line=str(doc["line"]), operations=ops,
                          downtimes=downs, kpis={str(k): float(v) for k, v in doc.get("kpis", {}).items()},
                          previous=doc.get("previous"), reason=str(doc.get("reason", "")))


__all__ = ["downtime_to_json", "iso", "operation_to_json", "plan_from_json", "plan_to_json", "when"]
