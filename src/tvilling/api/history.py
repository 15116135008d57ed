"""History route: a twin property's raw readings, or bucketed aggregates, over a time range."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from tvilling.api.openapi import json_body, problems
from tvilling.api.twins import _json
from tvilling.core.envelope import format_ts, parse_ts
from tvilling.core.errors import Malformed, TooLarge, TvillingError
from tvilling.core.readings import QUALITY_NAMES, flag_names
from tvilling.ingest.normalise import to_us
from tvilling.security.enforce import require

router = APIRouter(tags=["history"])
AGGS = ("min", "max", "avg", "last", "count", "sum")
MAX_BUCKETS = 10_000
_EVERY = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_YEAR_1000_US, _YEAR_10000_US = -30_610_224_000_000_000, 253_402_300_800_000_000
_UNIT_US = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}


def parse_every(text: str) -> int:
    """``30s``, ``5m``, ``1h``, ``1d``, ``250ms`` or plain seconds → microseconds."""
    m = _EVERY.match(text.strip())
    if m is None or float(m.group(1)) <= 0:
        raise Malformed(f"every={text!r}: use a duration like 30s, 5m, 1h or 1d", field="every")
    return int(float(m.group(1)) * _UNIT_US[m.group(2) or "s"])


def _time(text: str | None, field: str, default: int) -> int:
    if text is None:
        return default
    value: Any = text
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        value = float(text)
    try:
        return to_us(parse_ts(value, field=field))
    except (TvillingError, OverflowError, ValueError) as exc:  # out of range or not a time: a bad parameter
        raise Malformed(f"{field}={text!r}: use ISO 8601 with a zone, or epoch milliseconds", field=field) from exc


def _param(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


_TEXT: dict[str, Any] = {"type": "string"}
HISTORY_PARAMS = [
    _param("property", _TEXT, "the property (dotted path) whose history is asked for", required=True),
    _param("from", _TEXT, "start (inclusive): ISO 8601 with a zone, or epoch milliseconds; default 'to' - 1 day"),
    _param("to", _TEXT, "end (exclusive): ISO 8601 with a zone, or epoch milliseconds; default now"),
    _param("every", _TEXT, "bucket size (30s, 5m, 1h, 1d, 250ms): aggregates per bucket; without it, raw points"),
    _param("agg", {"type": "string", "default": "avg"}, f"aggregates, comma-separated: {', '.join(AGGS)}"),
    _param("limit", {"type": "integer", "minimum": 1, "default": 1000}, "raw points per page (at most 10000)"),
    _param("after", {"type": "integer"}, "raw points after this time (µs): the previous page's 'next'"),
]


def _int_param(params: Any, name: str) -> int | None:
    text = params.get(name)
    if text is None:
        return None
    if not re.fullmatch(r"\s*[-+]?\d+\s*", text):
        raise Malformed(f"query.{name}: Input should be a valid integer, unable to parse string as an integer",
                        field=f"query.{name}")
    return int(text)


@router.get("/api/twins/{twin_id}/history", responses=problems(400, 404, 413, 422),
            summary="A property's readings (raw, paged) or aggregates per time bucket (every=, agg=)",
            openapi_extra={"parameters": HISTORY_PARAMS})
async def history(request: Request, twin_id: str) -> Response:
    # the query string is read here, not declared to FastAPI: its per-parameter checks cost more than an
    # aggregate answered from memory (the parameters are documented in HISTORY_PARAMS, errors are the same)
    platform = request.app.state.platform
    params = request.query_params
    property = params.get("property")
    if property is None:
        raise Malformed("query.property: Field required", field="query.property")
    require(request, "read", twin_id, kind="history", path=f"reported.{property}")  # a revoked path: 403
    limit, after = _int_param(params, "limit"), _int_param(params, "after")
    if limit is None:
        limit = 1000
    elif limit < 1:
        raise Malformed("query.limit: Input should be greater than or equal to 1", field="query.limit")
    start, end, every, agg = params.get("from"), params.get("to"), params.get("every"), params.get("agg", "avg")
    try:
        start_us, end_us, every_us, aggs = _query(start, end, every, agg, limit)
    except TvillingError:
        await run_in_threadpool(platform.twins.get, twin_id)  # an unknown twin is a 404 before a bad parameter
        raise
    store = platform.history
    if every_us is None:
        points = await run_in_threadpool(_known_twin_then, platform, twin_id, store.range, twin_id, property,
                                         start_us, end_us, limit=limit, after_us=after)
        items = [_point(p) for p in points]
        nxt = points[-1].ts_us if len(points) >= limit else None
        return _json({"twin": twin_id, "property": property, "items": items, "next": nxt})
    now = getattr(store, "aggregate_now", None)  # held in memory: answered here, without a worker thread
    cols = now(twin_id, property, start_us, end_us, every_us, tuple(aggs)) if now is not None else None
    if cols is not None:
        platform.twins.get(twin_id)  # 404 for an unknown twin: one read by primary key (microseconds)
    else:
        buckets = await run_in_threadpool(_known_twin_then, platform, twin_id, store.aggregate, twin_id, property,
                                          start_us, end_us, every_us, tuple(aggs))
        cols = {"start_us": [b.start_us for b in buckets], **{a: [getattr(b, a) for b in buckets] for a in aggs}}
    names = ["ts", *(a if len(aggs) > 1 else "value" for a in aggs)]
    values = [_times(cols["start_us"]), *([_finite(x) for x in cols[a]] for a in aggs)]
    items = [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
    return _json({"twin": twin_id, "property": property, "every": every, "agg": aggs, "items": items,
                  "next": None})


def _query(start: str | None, end: str | None, every: str | None, agg: str,
           limit: int) -> tuple[int, int, int | None, list[str]]:
    """The history query's parameters checked: (start µs, end µs, bucket µs or None for raw points, aggregates)."""
    now_us = to_us(datetime.now(UTC))
    end_us = _time(end, "to", now_us + 1)
    start_us = _time(start, "from", end_us - 86_400_000_000)
    if end_us <= start_us:
        raise Malformed("'to' must be after 'from'", field="to")
    if every is None:
        if limit > 10_000:
            raise TooLarge("limit may be at most 10000", field="limit", rule="max_limit")
        return start_us, end_us, None, []
    every_us = parse_every(every)
    aggs = [a.strip() for a in agg.split(",") if a.strip()]
    bad = [a for a in aggs if a not in AGGS]
    if bad or not aggs:
        raise Malformed(f"agg={agg!r}: use one or more of {', '.join(AGGS)}", field="agg")
    if (end_us - start_us) // every_us > MAX_BUCKETS:
        raise TooLarge(f"that range holds more than {MAX_BUCKETS} buckets of {every}; widen 'every'",
                       field="every", rule="max_buckets")
    return start_us, end_us, every_us, aggs


def _known_twin_then(platform: Any, twin_id: str, read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``read(*args, **kwargs)`` once the twin is known to exist (404 otherwise): one trip to a worker thread."""
    platform.twins.get(twin_id)
    return read(*args, **kwargs)


def _point(p: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"ts": format_ts(_dt(p.ts_us)),
                           "value": json.loads(p.text) if p.text is not None else _finite(p.value)}
    if p.quality:
        out["quality"] = QUALITY_NAMES[p.quality]
    if p.flags:
        out["flags"] = flag_names(p.flags)
    return out


def _times(starts: list[int]) -> list[str]:
    """Bucket starts as the API writes times (``format_ts``): whole seconds of years 1000-9999 in one NumPy call."""
    if starts and all(t % 1_000_000 == 0 for t in starts) and min(starts) >= _YEAR_1000_US \
            and max(starts) < _YEAR_10000_US:
        text = np.datetime_as_string(np.array(starts, dtype="datetime64[us]"), unit="s")
        return [t + "Z" for t in text.tolist()]
    return [format_ts(_dt(t)) for t in starts]


def _dt(ts_us: int) -> datetime:
    return datetime.fromtimestamp(ts_us / 1e6, tz=UTC)


def _finite(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


_KEEP = {"type": ["string", "null"], "description": "a duration like 30d or 12h; null keeps forever"}
RETENTION_BODY = {
    "type": "object", "additionalProperties": False,
    "description": '{"model"|"twin"?: id, "property"?: name, "raw": "30d", "minute": "365d", "hour": null} '
    "— null keeps forever",
    "properties": {"model": {"type": ["string", "null"]}, "twin": {"type": ["string", "null"]},
                   "property": {"type": ["string", "null"]}, "raw": _KEEP, "minute": _KEEP, "hour": _KEEP},
}


def _keep(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Malformed(f"{field} must be a duration like '30d' or '12h', or null (keep forever)", field=field)
    return parse_every(value)


@router.put("/api/history/retention", summary="Set how long history is kept for everything, a model or a twin",
            openapi_extra=json_body(RETENTION_BODY), responses=problems(400, 413, 422))
async def set_retention(request: Request) -> dict[str, Any]:
    from tvilling.api.body import read_json
    from tvilling.history.ports import RetentionRule

    body = await read_json(request)
    if not isinstance(body, dict):
        raise Malformed("the body must be a JSON object", field="body")
    extra = sorted(set(body) - {"model", "twin", "property", "raw", "minute", "hour"})
    if extra:
        raise Malformed(f"unknown key(s) {extra}", field=extra[0])
    for key in ("model", "twin", "property"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise Malformed(f"{key} must be a string, or null for any; got {type(body[key]).__name__}", field=key)
    platform = request.app.state.platform
    model = body.get("model")
    if model is not None:
        platform.models.expand(model)  # 422 for an unknown model
    rule = RetentionRule(raw_us=_keep(body.get("raw"), "raw"), minute_us=_keep(body.get("minute"), "minute"),
                         hour_us=_keep(body.get("hour"), "hour"), model=model, twin=body.get("twin"),
                         prop=body.get("property"))
    await run_in_threadpool(platform.history.set_retention, rule)
    return _rule_json(rule)


@router.get("/api/history/retention", summary="The retention rules")
async def list_retention(request: Request) -> dict[str, Any]:
    rules = await run_in_threadpool(request.app.state.platform.history.retention_rules)
    return {"items": [_rule_json(r) for r in rules]}


def _rule_json(rule: Any) -> dict[str, Any]:
    def days(us: int | None) -> str | None:
        return None if us is None else f"{us / 86_400_000_000:g}d"

    return {"model": rule.model, "twin": rule.twin, "property": rule.prop, "raw": days(rule.raw_us),
            "minute": days(rule.minute_us), "hour": days(rule.hour_us)}
