"""The twin's analytics on a scenario's simulated series: predicted anomaly and remaining life per option.

A scenario answers from physics (the model's own ``failed`` condition, :mod:`.scenario_kpis`); this
module lets the analytics bound to the twin's model answer too, so that "time to failure" can be read
from the analytic the live twin uses:

* :func:`fork_analytics` (at fork time, on the caller's thread) finds the analytics bound to the
  simulated twin and to the parts its relationships reach, the model output that predicts each of
  their inputs (the simulation's ``outputs`` table first, then the model's ``part:path`` names, the
  part named as :func:`.scenario_service.part_name` does), and copies each analytic's state: the live
  engine's runner (learned baseline, detector and trend state) pickled under the engine's lock, or,
  where the live one is missing or newer than the fork, the analytic's promoted version. Nothing of
  the live engine, its registry or the history is changed.
* :func:`analyse` (pure, after a run) feeds each option's simulated rows, sample by sample, through
  the live path's own step (:func:`tvilling.analytics.binding.step.process`) on a fresh copy of that
  state, and keeps what it derives: the anomaly score of each row and the remaining life at the start,
  every ``every`` seconds and at the end. The outputs are read, never written.
* :func:`analytic_kpis` reduces them per option: the first time the detector flags (score ≥ 1, the
  alarm level; p10/p50/p90 over samples, ``inf`` where too few flagged within the horizon) and the
  share of samples flagged; the remaining life the analytic predicts at the horizon's start and end;
  and the RUL-based time to failure (:func:`ttf_of`: when the analytic first says 0, or earlier where its
  last positive prediction said so; else its last prediction ``t + rul``, which may lie beyond the
  horizon; ``inf`` while it sees no credible trend). The remaining life at the end is that time less
  the horizon (0 once passed). Over several bound twins (two bearings) a sample's value is the earliest.

The model is not the asset: its outputs miss the asset's measured level by a calibration error the
detector would flag at once. Each analytic input is therefore anchored: the simulated series is
shifted by the difference between the twin's measured level at the fork (the mean of its newest
:data:`ANCHOR_ROWS` readings, else its reported value) and the model's value at the start, scaled
with the operating point by the analytic's declared exponents (``(context / context at the start)^b``
on the first context input), so a slower machine's lower vibration keeps its bias in proportion. The
analytics are built for measured data (a trend's significance test, a detector's threshold), so the
series also get the twin's measurement noise: Gaussian, with the standard deviation the newest
:data:`NOISE_ROWS` readings show (from their successive differences, robust to a trend), drawn once
per sample and shared by every option (the comparison stays paired), scaled with the operating point
too. A detector then also raises the false alarms it would raise live on such noise.

Time: a simulated row at ``t`` model seconds is stamped ``t0 + t / time_scale`` (the simulation's
``time_scale``: model seconds per second of the readings' time), ``t0`` being the newest row the
copied state scored, so the analytics see the live twin's time base; one row per scenario step (the
demo's 1-minute step at ``time_scale`` 60 is the rate its twins report at; a detector's smoothing and
hold count rows, so a much finer or coarser step changes what they mean). Cost: the step runs once per
sample and bound twin (the analytics keep per-twin state that the step advances row by row; it cannot
be shared across samples), a remaining-life analytic once per evaluation; ``samples`` caps how many
samples per option are analysed (evenly spaced: the draws are independent, so they are a random subset).
On the demo's what-if (3 options × 100 samples × 24 h, 4 bound analytics) the default 20 samples per
option cost about 2 CPU seconds beside the run's 0.5; all 100 about 10.
"""

from __future__ import annotations

import itertools
import math
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.analytics.binding.registry import load_artifact
from tvilling.analytics.binding.runners import US_PER_UNIT, Runner, make_runner
from tvilling.analytics.binding.spec import FLEET, AnalyticSpec
from tvilling.analytics.binding.step import AnalyticsState, Batch, process
from tvilling.analytics.detectors.operating_point import parse_exponents
from tvilling.core.errors import NotFound
from tvilling.core.readings import Readings
from tvilling.simulation.ports import Array, Signature
from tvilling.simulation.scenario_runner import ScenarioResult
from tvilling.simulation.spec import SimulationSpec

#: the newest readings of an input whose mean is the twin's measured level at the fork
ANCHOR_ROWS = 30
#: the newest readings of an input its measurement noise is estimated from
NOISE_ROWS = 240
#: seconds of scenario time between two evaluations of a remaining-life analytic
RUL_EVERY_S = 2 * 3600.0
#: the most samples per option analysed (None: all)
MAX_SAMPLES: int | None = 20
QUANTILES = (10.0, 50.0, 90.0)
KINDS = ("anomaly", "rul")
Triple = tuple[float, float, float]
Progress = Callable[[float], None]


@dataclass(frozen=True)
class Feed:
    """One analytic on one twin, fed by model outputs: ``outputs`` holds the model output of each of the
    analytic's columns (inputs, then context); ``state`` its runner as it was at the fork (pickled);
    ``levels`` the measured level of each input (NaN: not anchored), ``noise`` its measurement noise
    (standard deviation; empty: none) and ``exponents`` how both scale with the first context input."""

    spec: AnalyticSpec
    twin: str
    model: str
    outputs: tuple[str, ...]
    state: bytes
    version: int | None
    origin: str  # "live": the live engine's state; "promoted": the promoted version, fresh
    levels: tuple[float, ...]
    exponents: tuple[float, ...]
    noise: tuple[float, ...] = ()

    @property
    def label(self) -> str:
        """``analytic@twin``."""
        return f"{self.spec.name}@{self.twin}"

    def describe(self) -> dict[str, Any]:
        """What the record says of this analytic."""
        return {"analytic": self.spec.name, "twin": self.twin, "kind": self.spec.kind, "method": self.spec.method,
                "version": self.version, "state": self.origin, "outputs": list(self.outputs)}


@dataclass(frozen=True)
class AnalyticsFork:
    """The analytics of one scenario, taken at the fork: their feeds, those that cannot run (and why),
    the time origin ``t0_us`` and ``time_scale`` (model seconds per second of the readings' time)."""

    feeds: tuple[Feed, ...] = ()
    skipped: Mapping[str, str] = field(default_factory=dict)
    t0_us: int = 0
    time_scale: float = 1.0
    modelset: Any = None

    @property
    def outputs(self) -> list[str]:
        """The model outputs the feeds read (what the run must record)."""
        return list(dict.fromkeys(o for f in self.feeds for o in f.outputs))


# -- at the fork ---------------------------------------------------------------------------------------
def bind_outputs(spec: SimulationSpec, signature: Signature, twin: Any, twins: Any) -> dict[tuple[str, str], str]:
    """``(twin id, property path) → model output`` for ``twin`` and its parts: ``part:path`` outputs on the
    part its relationship reaches, plain names on the twin itself, then the simulation's ``outputs``."""
    from tvilling.simulation.binding import Binder
    from tvilling.simulation.scenario_service import part_name

    names = signature.names("outputs")
    out: dict[tuple[str, str], str] = {(twin.id, n): n for n in names if ":" not in n}
    for rel in twin.relationships.values():
        try:
            target = twins.get(rel.target)
        except NotFound:
            continue
        prefix = part_name(rel.name, rel.properties, target.reported) + ":"
        out.update({(target.id, n[len(prefix):]): n for n in names if n.startswith(prefix)})
    bound = Binder(spec, twins, None).bind(twin.id, twin)
    for name, source in spec.outputs.items():
        target_id = bound.twin_of(source) if source.constant is None else None
        if target_id is not None:
            out[(target_id, source.path)] = name
    return out


def _lookup(values: Mapping[str, Any], path: str) -> float:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return math.nan
        node = node[part]
    ok = isinstance(node, int | float) and not isinstance(node, bool) and math.isfinite(node)
    return float(node) if ok else math.nan


def measured_level(history: Any, twin: Any, prop: str) -> tuple[float, float]:
    """The twin's measured level of ``prop`` and its measurement noise: the mean of its newest
    :data:`ANCHOR_ROWS` readings, and the standard deviation of the successive differences of its newest
    :data:`NOISE_ROWS` over √2 (a trend or a step does not inflate it much); else its reported value and
    no noise; else NaN and no noise."""
    if history is not None:
        from tvilling.analytics.binding.frames import newest_points

        points = newest_points(history, twin.id, prop, NOISE_ROWS)
        values = np.array([p.value for p in points], dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            steps = np.diff(values)
            noise = float(np.median(np.abs(steps)) * 1.4826 / math.sqrt(2.0)) if steps.size >= 2 else 0.0
            return float(values[-ANCHOR_ROWS:].mean()), noise
    return _lookup(twin.reported, prop), 0.0


def _exponents(spec: AnalyticSpec) -> tuple[float, ...]:
    if not spec.context:
        return tuple(0.0 for _ in spec.inputs)
    declared = parse_exponents(spec.params.get("exponents"), spec.inputs, spec.context)
    first = spec.context[0]
    return tuple(float(declared.get(name, {}).get(first, 0.0)) for name in spec.inputs)


def _promoted(registry: Any, spec: AnalyticSpec, twin: str) -> Runner | None:
    """A runner of the promoted version of ``spec`` (for ``twin``, or the fleet's), fresh; None when there is
    none trained with this configuration."""
    if registry is None:
        return None
    scope = twin if spec.per_twin else FLEET
    version = registry.promoted(spec.name, scope)
    if version is None or version.fingerprint != spec.fingerprint:
        return None
    runner = make_runner(spec, scope)
    runner.load(load_artifact(registry.artifact(spec.name, scope, version.version)), version.version)
    return runner


def fork_analytics(engine: Any, spec: SimulationSpec, signature: Signature, twins: Any, twin_id: str, *,
                   history: Any = None, at_us: int | None = None) -> AnalyticsFork:
    """The analytics of ``twin_id`` and its parts, ready to run on a scenario of ``spec``'s model.

    ``engine`` is the live :class:`~tvilling.analytics.binding.engine.AnalyticsEngine` (its runners are
    copied under its lock, never changed); ``twins`` a twin store (the fork's); ``history`` the live
    history (read for the measured levels); ``at_us`` the fork time (None: now). An analytic whose
    inputs no model output predicts, a fleet remaining-life model, or one with no fitted state is left
    out, and ``skipped`` says why."""
    twin = twins.get(twin_id)
    predicted = bind_outputs(spec, signature, twin, twins)
    members = [twin, *(t for t in (_get(twins, r.target) for r in twin.relationships.values()) if t is not None)]
    modelset = engine.models.modelset
    lock = getattr(engine, "_lock", None) or nullcontext()  # the live step holds it while it moves the state
    skipped: dict[str, str] = {}
    found: list[tuple[AnalyticSpec, Any, tuple[str, ...], Runner, str]] = []
    seen: list[int] = []
    for member in dict((m.id, m) for m in members).values():
        for a in engine.specs_for(member.model):
            label = f"{a.name}@{member.id}"
            if a.kind not in KINDS or a.method == "rul-fleet":
                skipped[label] = (f"{a.method} predicts in cycles of its own run-to-failure histories; it is not run "
                                  "on simulated series")
                continue
            missing = [c for c in a.columns if (member.id, c) not in predicted]
            if missing:
                skipped[label] = (f"no output of model {spec.name!r} predicts {missing[0]!r} of {member.id} "
                                  "(map it in the simulation's outputs)")
                continue
            with lock:
                live = engine.state.runners.get((a.name, member.id))
                scored = engine.state.seen.get((a.name, member.id))
                fitted = live is not None and live.fitted
                blob = pickle.dumps(live, protocol=pickle.HIGHEST_PROTOCOL) if fitted else None
            if blob is not None and scored is not None and (at_us is None or at_us >= scored):
                runner, origin = pickle.loads(blob), "live"
                seen.append(int(scored))
            else:
                promoted = _promoted(engine.registry, a, member.id)
                if promoted is None:
                    skipped[label] = f"{a.name} has no fitted state for {member.id} and no promoted version"
                    continue
                runner, origin = promoted, "promoted"
            found.append((a, member, tuple(predicted[(member.id, c)] for c in a.columns), runner, origin))
    t0 = max(seen) if seen else (at_us if at_us is not None else int(time.time() * 1e6))
    feeds = []
    for a, member, outputs, runner, origin in found:
        measured = [measured_level(history, member, c) for c in a.inputs]
        feeds.append(Feed(a, member.id, member.model, outputs, pickle.dumps(runner, protocol=pickle.HIGHEST_PROTOCOL),
                          runner.version, origin, tuple(m[0] for m in measured), _exponents(a),
                          tuple(m[1] for m in measured)))
    return AnalyticsFork(tuple(feeds), skipped, int(t0), float(spec.time_scale), modelset)


def _get(twins: Any, twin_id: str) -> Any:
    try:
        return twins.get(twin_id)
    except NotFound:
        return None


# -- after the run -------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AnalyticRun:
    """What one analytic derived on one twin, per option and analysed sample (arrays ``(options, samples)``).

    Anomaly: ``score`` per row ``(steps + 1, options, samples)`` (NaN: not scored, e.g. stopped) and
    ``flagged_at`` (seconds; inf: never). Remaining life: ``rul_h`` at ``evaluated`` times (hours of
    scenario time; inf: no credible trend; NaN: nothing said) and ``ttf_s``."""

    feed: Feed
    score: npt.NDArray[np.float32] | None = None
    flagged_at: Array | None = None
    evaluated: Array | None = None
    rul_h: Array | None = None
    ttf_s: Array | None = None
    failure: str | None = None  # the step's first error on this analytic, if any


@dataclass(frozen=True, eq=False)
class AnalyticsResult:
    """The analytics of a scenario: a run per feed, the samples analysed (indices), what was left out."""

    runs: list[AnalyticRun]
    options: list[str]
    times: Array
    horizon: float
    samples: npt.NDArray[np.int64]
    skipped: Mapping[str, str]
    seconds: float


def _anchor(rows: Array, feed: Feed, noise: Array | None) -> Array:
    """The inputs of ``rows`` (time × samples × columns) shifted to the measured levels, plus ``noise``
    (time × samples × inputs, standard normal) times the measured noise, both scaled with the operating point."""
    k = len(feed.spec.inputs)
    levels = np.asarray(feed.levels, dtype=np.float64)
    bias = np.where(np.isfinite(levels), levels - rows[0, :, :k], 0.0)  # samples × inputs
    exps = np.asarray(feed.exponents, dtype=np.float64)
    if feed.spec.context and exps.any():
        ctx, start = rows[:, :, k], rows[0, :, k]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(start > 0, np.maximum(ctx, 0.0) / start, 1.0)
        scale = ratio[:, :, None] ** exps[None, None, :]
    else:
        scale = np.ones((1, 1, k))
    shift = bias[None, :, :] + (0.0 if noise is None else noise * np.asarray(feed.noise)[None, None, :])
    out = rows.copy()
    out[:, :, :k] += shift * scale
    return out


def _readings(twin: str, columns: Sequence[str], ts: npt.NDArray[np.int64], X: Array) -> Readings:
    n = X.size
    return Readings(np.full(n, twin, dtype=object), np.tile(np.asarray(columns, dtype=object), X.shape[0]),
                    np.repeat(ts, X.shape[1]), X.ravel())


def _values(out: Any, name: str) -> tuple[npt.NDArray[np.int64], Array, npt.NDArray[np.bool_]]:
    """The readings ``name`` a step derived: times, values, and whether each was a null (no value)."""
    derived = out.derived()
    if derived is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=bool)
    r = derived[0]
    sel = np.flatnonzero(r.prop == name)
    null = np.zeros(sel.size, dtype=bool) if r.text is None else np.array([r.text[i] == "null" for i in sel])
    return r.ts[sel], r.value[sel], null


def _rul_seconds(spec: AnalyticSpec, time_scale: float) -> float:
    """Scenario seconds per unit of the analytic's remaining life."""
    unit = US_PER_UNIT[str(spec.params.get("unit", "hour"))] / 1e6
    return unit * time_scale / float(spec.params.get("time_scale", 1.0))


def _pick(samples: int, limit: int | None) -> npt.NDArray[np.int64]:
    if limit is None or limit >= samples:
        return np.arange(samples, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, samples - 1, max(limit, 1))).astype(np.int64))


def analyse(result: ScenarioResult, fork: AnalyticsFork, *, machine: int = 0, samples: int | None = MAX_SAMPLES,
            every: float = RUL_EVERY_S, seed: int | None = None, progress: Progress | None = None) -> AnalyticsResult:
    """Run ``fork``'s analytics on ``result``'s series of ``machine`` (see the module text); ``samples`` caps
    the samples per option, ``every`` is the spacing (seconds) of the remaining-life evaluations, ``seed``
    makes the measurement noise reproducible (the same noise for every option: the comparison is paired)."""
    began = time.perf_counter()
    picked = _pick(result.failed_at.shape[2], samples)
    ts = fork.t0_us + 1 + np.round(np.asarray(result.times) / fork.time_scale * 1e6).astype(np.int64)
    stride = max(1, round(every / result.step))
    bounds = sorted({0, 1, *range(1 + stride, ts.size, stride), ts.size})
    rng = np.random.default_rng(seed)
    runs: list[AnalyticRun] = []
    total = max(1, len(fork.feeds) * len(result.options))
    for i, feed in enumerate(fork.feeds):
        missing = [o for o in feed.outputs if o not in result.series]
        if missing:
            raise ValueError(f"scenario analytics: the run did not record {missing[0]!r}, which {feed.label} reads")
        data = np.stack([result.series[o][:, :, machine, :][:, :, picked] for o in feed.outputs], axis=-1)
        noise = rng.standard_normal((ts.size, picked.size, len(feed.spec.inputs))) if any(feed.noise) else None

        def step(done: int, base: int = i * len(result.options)) -> None:
            if progress is not None:
                progress((base + done) / total)

        runs.append(_run_feed(feed, data.astype(np.float64), noise, ts, bounds, result, fork, step))
    return AnalyticsResult(runs, list(result.options), np.asarray(result.times), result.horizon, picked,
                           dict(fork.skipped), time.perf_counter() - began)


def _run_feed(feed: Feed, data: Array, noise: Array | None, ts: npt.NDArray[np.int64], bounds: list[int],
              result: ScenarioResult, fork: AnalyticsFork, step: Callable[[int], None]) -> AnalyticRun:
    """One feed over every option and sample (``data``: rows × options × samples × columns), each sample on
    its own copy of the state taken at the fork, in the live path's step."""
    spec = feed.spec
    n_rows, n_opt, n_s = data.shape[0], data.shape[1], data.shape[2]
    times = np.asarray(result.times, dtype=np.float64)
    anomaly = spec.kind == "anomaly"
    cuts = [(0, n_rows)] if anomaly else list(itertools.pairwise(bounds))
    score = np.full((n_rows, n_opt, n_s), np.nan, dtype=np.float32)
    rul = np.full((len(cuts), n_opt, n_s), np.nan)  # hours of scenario time, inf: no credible trend
    said_at = np.full((len(cuts), n_opt, n_s), np.nan)  # when the analytic said it (its last scored row)
    per_unit = _rul_seconds(spec, fork.time_scale) / 3600.0
    k = len(spec.inputs)
    least = int(spec.params.get("min_rows", 30))  # the rows a trend needs before it says anything
    failure: str | None = None
    vid = f"{feed.twin}~scenario"
    for o in range(n_opt):
        rows = _anchor(data[:, o], feed, noise)
        for s in range(n_s):
            state = AnalyticsState([spec])
            state.runners[(spec.name, vid)] = pickle.loads(feed.state)
            for e, (a, b) in enumerate(cuts):
                out = process(Batch(_readings(vid, spec.columns, ts[a:b], rows[a:b, s, :]), {vid: feed.model},
                                    fork.modelset), state)
                if out.failed and failure is None:
                    failure = out.failed[0].why
                if anomaly:
                    at, value, _ = _values(out, "anomaly_score")
                    score[np.searchsorted(ts, at), o, s] = value
                else:
                    at, value, null = _values(out, "rul")
                    if at.size:
                        rul[e, o, s] = math.inf if null[-1] else float(value[-1]) * per_unit
                        said_at[e, o, s] = times[np.searchsorted(ts, at[-1])]
                    elif _turning(rows[a:b, s], rows[0, s], k) >= least:  # enough rows, and no trend in them
                        rul[e, o, s], said_at[e, o, s] = math.inf, times[b - 1]
        step(o + 1)
    if anomaly:
        hit = np.nan_to_num(score, nan=0.0) >= 1.0
        first = np.where(hit.any(axis=0), times[np.argmax(hit, axis=0)], np.inf)
        return AnalyticRun(feed, score=score, flagged_at=first, failure=failure)
    evaluated = times[np.asarray(bounds[1:]) - 1]
    return AnalyticRun(feed, evaluated=evaluated, rul_h=rul, ttf_s=ttf_of(rul, said_at), failure=failure)


def _turning(rows: Array, start: Array, k: int) -> int:
    """How many of ``rows`` the machine turned in: the first context input above a tenth of its value at the
    start (below it the analytics count the machine as stopped); without a context input, all."""
    if rows.shape[1] <= k:
        return int(rows.shape[0])
    return int((rows[:, k] > 0.1 * max(float(start[k]), 0.0)).sum())


def ttf_of(rul_h: Array, said_at: Array) -> Array:
    """The RUL-based time to failure (seconds) of each column of ``rul_h`` (evaluations first; hours, inf: no
    credible trend, NaN: nothing said) said at ``said_at`` (seconds): where the analytic once says 0, the
    earlier of that time and the failure time its last positive prediction before it gave; else its last
    prediction ``t + rul``; inf when it never said anything or last saw no credible trend.

    >>> inf, nan = math.inf, math.nan
    >>> ttf_of(np.array([[5.0, 5.0, nan], [2.0, inf, nan], [0.0, inf, nan]]),
    ...        np.array([[0.0, 0.0, nan], [7200.0, 7200.0, nan], [14400.0, 14400.0, nan]])).tolist()
    [14400.0, inf, inf]
    """
    said = ~np.isnan(rul_h)
    ends = np.where(said, said_at + rul_h * 3600.0, np.nan)  # each prediction of the failure time
    zero = said & (rul_h <= 0.0)
    any_zero = zero.any(axis=0)
    first_zero = np.argmax(zero, axis=0)
    # the last prediction said before the first zero (or at all, when there is none)
    k = np.arange(rul_h.shape[0]).reshape(-1, *([1] * (rul_h.ndim - 1)))
    before = said & ~zero & np.where(any_zero, k < first_zero, True)
    last = np.where(before.any(axis=0), rul_h.shape[0] - 1 - np.argmax(before[::-1], axis=0), -1)
    prior = np.take_along_axis(ends, np.maximum(last, 0)[None], axis=0)[0]
    prior = np.where(last >= 0, prior, np.inf)
    zero_at = np.take_along_axis(np.where(np.isnan(said_at), np.inf, said_at), first_zero[None], axis=0)[0]
    return np.where(any_zero, np.fmin(zero_at, prior), np.where(np.isnan(prior), np.inf, prior))


# -- KPIs ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnalyticKpis:
    """What the analytics say of one option (hours; ``inf``: beyond the horizon or no credible trend;
    None: no analytic of that kind ran). ``anomaly_h``: first time the detector flags; ``rul_start_h``
    and ``rul_end_h``: remaining life predicted at the horizon's start and end; ``ttf_rul_h``: the
    RUL-based time to failure."""

    option: str
    anomaly_h: Triple | None
    anomaly_probability: float | None
    rul_start_h: Triple | None
    rul_end_h: Triple | None
    ttf_rul_h: Triple | None


def _quantiles(values: Array) -> Triple | None:
    v = values[~np.isnan(values)]
    if not v.size:
        return None
    q = np.percentile(v, QUANTILES, method="inverted_cdf")
    return float(q[0]), float(q[1]), float(q[2])


def analytic_kpis(analysed: AnalyticsResult) -> list[AnalyticKpis]:
    """The analytics' KPIs of every option, the baseline first (the earliest over the bound twins)."""
    anomaly = [r.flagged_at for r in analysed.runs if r.flagged_at is not None]
    ruls = [r for r in analysed.runs if r.rul_h is not None and r.ttf_s is not None]
    flagged = np.min(anomaly, axis=0) if anomaly else None
    if ruls:
        with np.errstate(all="ignore"):
            start = np.fmin.reduce([r.rul_h[0] for r in ruls if r.rul_h is not None])
            ttf = np.min([r.ttf_s for r in ruls if r.ttf_s is not None], axis=0)
        end = np.where(np.isinf(ttf), np.inf, np.maximum(ttf - analysed.horizon, 0.0) / 3600.0)
    out = []
    for o, name in enumerate(analysed.options):
        out.append(AnalyticKpis(
            option=name,
            anomaly_h=None if flagged is None else _quantiles(flagged[o] / 3600.0),
            anomaly_probability=None if flagged is None else float(np.mean(flagged[o] <= analysed.horizon)),
            rul_start_h=_quantiles(start[o]) if ruls else None,
            rul_end_h=_quantiles(end[o]) if ruls else None,
            ttf_rul_h=_quantiles(ttf[o] / 3600.0) if ruls else None))
    return out


def _hours(triple: Triple | None, key: str) -> dict[str, float | None]:
    if triple is None:
        return {}
    return {f"{key}_{q}_h": None if math.isinf(v) else round(v, 4) for q, v in zip(("p10", "p50", "p90"), triple,
                                                                                   strict=True)}


def kpi_fields(row: AnalyticKpis) -> dict[str, Any]:
    """The API's names for one option's analytic KPIs (only those of the kinds that ran)."""
    out: dict[str, Any] = {**_hours(row.anomaly_h, "anomaly")}
    if row.anomaly_probability is not None:
        out["p_anomaly_horizon"] = row.anomaly_probability
    out.update({**_hours(row.ttf_rul_h, "ttf_rul"), **_hours(row.rul_start_h, "rul_start"),
                **_hours(row.rul_end_h, "rul_end")})
    return out


def _bands(values: npt.NDArray[np.floating[Any]]) -> dict[str, list[float | None]]:
    """p10/p50/p90 over the last axis at each time (None: nothing there, or no credible trend)."""
    out: dict[str, list[float | None]] = {"p10": [], "p50": [], "p90": []}
    for row in values:
        q = _quantiles(row.astype(np.float64))
        for key, v in zip(("p10", "p50", "p90"), q or (math.nan,) * 3, strict=True):
            out[key].append(None if not math.isfinite(v) else round(v, 6))
    return out


def analytics_doc(analysed: AnalyticsResult, idx: Sequence[int], failure: str) -> dict[str, Any]:
    """The record's ``analytics`` section: what ran (and on which state), what was left out, the sources
    of the two times to failure, and each analytic's output bands per option (the anomaly score at the
    record's times ``idx``, the remaining life in hours at its evaluations)."""
    series: dict[str, Any] = {}
    for run in analysed.runs:
        doc: dict[str, Any]
        if run.score is not None:
            doc = {"output": "anomaly_score", "t_s": [float(analysed.times[i]) for i in idx]}
            doc.update({name: _bands(run.score[list(idx), o]) for o, name in enumerate(analysed.options)})
        elif run.rul_h is not None and run.evaluated is not None:
            doc = {"output": "rul_h", "t_s": [float(t) for t in run.evaluated]}
            doc.update({name: _bands(run.rul_h[:, o]) for o, name in enumerate(analysed.options)})
        else:
            continue
        series[run.feed.label] = doc
    ruls = [r.feed.label for r in analysed.runs if r.rul_h is not None]
    return {
        "ran": [{**r.feed.describe(), **({"error": r.failure} if r.failure else {})} for r in analysed.runs],
        "skipped": dict(analysed.skipped), "samples": int(analysed.samples.size),
        "seconds": round(analysed.seconds, 3),
        "sources": {"ttf": f"physics: {failure}",
                    "ttf_rul": f"analytics: {', '.join(ruls)}" if ruls else None,
                    "anomaly": ", ".join(r.feed.label for r in analysed.runs if r.score is not None) or None},
        "series": series}


__all__ = ["ANCHOR_ROWS", "MAX_SAMPLES", "NOISE_ROWS", "RUL_EVERY_S", "AnalyticKpis", "AnalyticRun", "AnalyticsFork",
           "AnalyticsResult", "Feed", "analyse", "analytic_kpis", "analytics_doc", "bind_outputs", "fork_analytics",
           "kpi_fields", "measured_level", "ttf_of"]
