"""Analytics routes: configured analytics and their versions, training, backtests, promotion, forecasts.

* ``GET /api/analytics`` — every configured analytic with its versions (per scope: a twin or ``*``);
* ``GET /api/analytics/{name}`` — one of them;
* ``POST /api/analytics/{name}/train`` — ``{"twins": [...], "from"?, "to"?, "promote"?: false}`` → a new
  version from stored history (``201``);
* ``POST /api/analytics/{name}/versions/{version}/backtest`` — ``{"twins": [...], "scope"?, "from"?, "to"?,
  "in_sample"?: false}`` → the report (also kept with the version). A fleet version is backtested
  out of sample: the twins it was trained on are left out (``in_sample: true`` keeps them), and
  the report says so (``out_of_sample``, ``left_out``);
* ``POST /api/analytics/{name}/versions/{version}/promote?scope=`` — make it the version that runs;
* ``POST /api/analytics/reset`` — ``{"twins": [...], "reason": "...", "parts"?: true}`` → the twins' analytics
  (and their parts') learn afresh, as after maintenance (:mod:`tvilling.analytics.binding.maintenance`);
* ``GET /api/twins/{id}/forecast?property=&horizon=&every=&points=&coverage=`` — h steps ahead with an interval.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tvilling.analytics.binding.engine import AnalyticsEngine
from tvilling.analytics.binding.frames import newest_points
from tvilling.analytics.binding.lifecycle import END, backtest, train
from tvilling.analytics.binding.maintenance import MAX_REASON, MaintenanceReset, check_reason
from tvilling.analytics.binding.spec import FLEET, AnalyticSpec
from tvilling.analytics.forecast import holt
from tvilling.api.body import read_json
from tvilling.api.history import _time, parse_every
from tvilling.api.openapi import json_body, problems
from tvilling.api.principal import principal
from tvilling.core.envelope import format_ts
from tvilling.core.errors import Invalid, NotFound
from tvilling.ingest.normalise import to_us

router = APIRouter(tags=["analytics"])
MAX_POINTS = 20_000


_TWINS = {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
          "description": "the twins whose stored history is used"}
_TIME = {"type": ["string", "number", "null"], "description": "ISO 8601 with a zone, or epoch milliseconds"}
TRAIN_BODY = {"type": "object", "required": ["twins"],
              "properties": {"twins": _TWINS, "from": _TIME, "to": _TIME,
                             "promote": {"type": "boolean", "default": False,
                                         "description": "make the new version the one that runs"}}}
BACKTEST_BODY = {"type": "object", "required": ["twins"],
                 "properties": {"twins": _TWINS, "from": _TIME, "to": _TIME,
                                "scope": {"type": ["string", "null"],
                                          "description": "the version's scope: a twin id, or * (fleet)"},
                                "in_sample": {"type": "boolean", "default": False,
                                              "description": "keep the twins a fleet version was trained on "
                                                             "(left out by default: the backtest is then "
                                                             "out of sample)"}}}


def _engine(request: Request) -> AnalyticsEngine:
    engine: AnalyticsEngine = request.app.state.platform.analytics
    return engine


def _spec(engine: AnalyticsEngine, name: str) -> AnalyticSpec:
    spec = engine.spec(name)
    if spec is None:
        raise NotFound(f"no analytic named {name!r} is configured; there are "
                       f"{', '.join(s.name for s in engine.specs) or 'none'}", rule="analytic")
    return spec


def describe(engine: AnalyticsEngine, spec: AnalyticSpec) -> dict[str, Any]:
    versions = engine.registry.versions(spec.name)
    out = spec.to_json()
    out["versions"] = [v.to_json() for v in versions]
    out["promoted"] = {v.scope: v.version for v in versions if v.status == "promoted"}
    out["failures"] = {twin: why for (name, twin), why in engine.failures.items() if name == spec.name}
    return out


@router.get("/api/analytics", summary="Configured analytics with their versions")
async def list_analytics(request: Request) -> dict[str, Any]:
    engine = _engine(request)
    items = await run_in_threadpool(lambda: [describe(engine, s) for s in engine.specs])
    return {"items": items}


@router.get("/api/analytics/{name}", responses=problems(404), summary="One configured analytic with its versions")
async def get_analytic(request: Request, name: str) -> dict[str, Any]:
    engine = _engine(request)
    spec = _spec(engine, name)
    return await run_in_threadpool(describe, engine, spec)


def _twins(body: Mapping[str, Any]) -> list[str]:
    twins = body.get("twins")
    if not isinstance(twins, list) or not twins or not all(isinstance(t, str) and t for t in twins):
        raise Invalid("twins must be a non-empty list of twin ids", field="twins", rule="required")
    return twins


def _range(body: Mapping[str, Any]) -> tuple[int, int]:
    def text(key: str) -> str | None:
        v = body.get(key)
        return None if v is None else str(v)

    start = _time(text("from"), "from", 0)
    end = _time(text("to"), "to", END)
    if end <= start:
        raise Invalid("'to' must be after 'from'", field="to", rule="range")
    return start, end


async def _body(request: Request) -> Mapping[str, Any]:
    body = await read_json(request)
    if not isinstance(body, Mapping):
        raise Invalid("the body must be a JSON object", field="body", rule="type")
    return body


@router.post("/api/analytics/{name}/train", status_code=201, openapi_extra=json_body(TRAIN_BODY),
             responses=problems(400, 404, 409, 413, 422),
             summary="Train a new version from stored history (a candidate unless promote=true)")
async def train_version(request: Request, name: str) -> JSONResponse:
    engine = _engine(request)
    spec = _spec(engine, name)
    body = await _body(request)
    start, end = _range(body)
    promote = body.get("promote", False)
    if not isinstance(promote, bool):
        raise Invalid("promote must be true or false", field="promote", rule="type")
    history = request.app.state.platform.history
    version = await run_in_threadpool(train, spec, engine.registry, history, _twins(body), start_us=start,
                                      end_us=end, promote=promote)
    if promote:
        await run_in_threadpool(engine.reload, name)
    return JSONResponse(version.to_json(), status_code=201)


@router.post("/api/analytics/{name}/versions/{version}/backtest", openapi_extra=json_body(BACKTEST_BODY),
             responses=problems(400, 404, 413, 422),
             summary="Replay a version over stored history; the report is kept with the version")
async def backtest_version(request: Request, name: str, version: int) -> dict[str, Any]:
    engine = _engine(request)
    spec = _spec(engine, name)
    body = await _body(request)
    twins = _twins(body)
    scope = body.get("scope") or (FLEET if not spec.per_twin else twins[0])
    v = await run_in_threadpool(engine.registry.get, name, str(scope), version)
    start, end = _range(body)
    in_sample = body.get("in_sample", False)
    if not isinstance(in_sample, bool):
        raise Invalid("in_sample must be true or false", field="in_sample", rule="type")
    history = request.app.state.platform.history
    return await run_in_threadpool(held_out_backtest, spec, engine.registry, history, v, twins, start, end,
                                   in_sample)


def held_out_backtest(spec: AnalyticSpec, registry: Any, history: Any, version: Any, twins: list[str],
                      start_us: int, end_us: int, in_sample: bool = False) -> dict[str, Any]:
    """A backtest of ``version`` on ``twins`` without the twins it was trained on (unless ``in_sample``).

    A fleet version records the twins it learnt from; scoring it on them measures how well it
    remembers, not how well it predicts. The report says which it is: ``out_of_sample`` (true,
    false, or null where the version does not record its training twins, as per-twin versions
    learn from a time range of the twin itself) and ``left_out`` (training twins dropped).
    """
    trained = set(version.metrics.get("twins") or []) if version.scope == FLEET else set()
    seen = [t for t in twins if t in trained]
    chosen = twins if in_sample else [t for t in twins if t not in trained]
    if not chosen:
        raise Invalid(f"version {version.version} of {spec.name!r} was trained on all {len(twins)} twin(s) named; "
                      "a backtest on them would be in sample: name twins it did not learn from (e.g. left out "
                      "of training with --exclude), or ask for in_sample", field="twins", rule="in_sample")
    report = backtest(spec, registry, history, version, chosen, start_us=start_us, end_us=end_us)
    report["out_of_sample"] = (not in_sample or not seen) if trained else None
    report["left_out"] = 0 if in_sample else len(seen)
    report["trained_on"] = len(trained) if trained else None
    registry.annotate(version.analytic, version.scope, version.version, backtest=report)
    return report


@router.post("/api/analytics/{name}/versions/{version}/promote", responses=problems(400, 404, 409, 422),
             summary="Make a version the one that runs (the previous one is retired)")
async def promote_version(request: Request, name: str, version: int, scope: str | None = None) -> dict[str, Any]:
    engine = _engine(request)
    spec = _spec(engine, name)
    if scope is None:
        if spec.per_twin:
            raise Invalid(f"analytic {name!r} is fitted per twin: name the twin with scope=<twin id>",
                          field="scope", rule="required")
        scope = FLEET
    v = await run_in_threadpool(engine.registry.promote, name, scope, version)
    await run_in_threadpool(engine.reload, name)
    return v.to_json()


RESET_BODY = {"type": "object", "required": ["twins", "reason"],
              "properties": {"twins": {**_TWINS, "description": "the twins (assets) maintained"},
                             "reason": {"type": "string", "minLength": 1, "maxLength": MAX_REASON,
                                        "description": "what was done to them (kept with the reset)"},
                             "parts": {"type": "boolean", "default": True,
                                       "description": "also reset the twins their relationships point to (parts)"}}}


@router.post("/api/analytics/reset", openapi_extra=json_body(RESET_BODY), responses=problems(400, 404, 413, 422),
             summary="Make twins' analytics learn afresh, as after maintenance (outputs removed, status learning)")
async def reset_analytics(request: Request) -> dict[str, Any]:
    body = await _body(request)
    twins = _twins(body)
    reason = check_reason(body.get("reason"))
    parts = body.get("parts", True)
    if not isinstance(parts, bool):
        raise Invalid("parts must be true or false", field="parts", rule="type")
    reset = MaintenanceReset(_engine(request), request.app.state.platform.twins)
    by = principal(request).actor

    def run() -> dict[str, Any]:
        return reset.reset(reset.targets(twins, parts=parts), reason=reason, by=by)

    return await run_in_threadpool(run)


@router.get("/api/twins/{twin_id}/forecast", responses=problems(400, 404, 413, 422),
            summary="A property forecast h steps ahead with an interval")
async def forecast(request: Request, twin_id: str, property: str, horizon: int = Query(10, ge=1, le=10_000),
                   every: str | None = None, points: int = Query(500, ge=4, le=MAX_POINTS),
                   coverage: float = Query(0.8, gt=0, lt=1)) -> dict[str, Any]:
    platform = request.app.state.platform
    await run_in_threadpool(platform.twins.get, twin_id)
    store = platform.history
    now_us = to_us(datetime.now(UTC))

    def series() -> tuple[list[int], list[float], int]:
        if every is not None:
            step = parse_every(every)
            buckets = store.aggregate(twin_id, property, now_us - points * step, now_us + 1, step, ("avg",))
            return [b.start_us for b in buckets], [b.avg for b in buckets if b.avg is not None], step
        pts = [p for p in newest_points(store, twin_id, property, points) if p.value == p.value]
        ts = [p.ts_us for p in pts]
        gaps = sorted(b - a for a, b in itertools.pairwise(ts) if b > a)
        return ts, [p.value for p in pts], gaps[len(gaps) // 2] if gaps else 0

    ts, values, step = await run_in_threadpool(series)
    if len(values) < 4:
        raise Invalid(f"twin {twin_id!r} has {len(values)} numeric readings of {property!r} in the window; "
                      "forecasting needs at least 4", field="property", rule="history")
    fc = await run_in_threadpool(holt, values, horizon, coverage)
    start = ts[-1]
    times = [format_ts(_dt(start + (i + 1) * step)) for i in range(horizon)]
    return {"twin": twin_id, "property": property, "method": "ets-additive-trend", "horizon": horizon,
            "step_s": step / 1e6, "from": format_ts(_dt(start)), "coverage": coverage,
            "points_used": len(values), "alpha": fc.alpha, "beta": fc.beta, "sigma": fc.sigma,
            "forecast": [{"ts": t, "mean": m, "lower": lo, "upper": hi}
                         for t, m, lo, hi in zip(times, fc.mean, fc.lower, fc.upper, strict=True)]}


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, UTC)
