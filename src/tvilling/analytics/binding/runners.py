"""The online state of one analytic for one scope: learn, then score or predict each new row.

A runner takes rows (timestamps in µs, a matrix with one column per configured input)
and returns its outputs as ``(name, ts, value)`` triples; the engine turns them into
reported properties and history. Runners are causal: the output at a row depends on
that row and the rows before it only.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.analytics.binding.spec import AnalyticSpec

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Output = tuple[str, Any, Any]  # (name, ts, value), or (name, ts column, value column) for numbers
US_PER_UNIT = {"second": 1e6, "minute": 60e6, "hour": 3600e6, "day": 86400e6}


@dataclass
class Drift:
    """Long-horizon drift of a fitted analytic: inputs against their training distribution, alarm rate.

    ``input_shift`` is the largest |EWMA of an input's training z-score| (span ``span`` rows);
    ``alarm_rate`` an EWMA of the anomaly flag; ``anomaly_rows`` how many rows the current anomaly
    has lasted. Drifting — "retrain it" — when the shift passes ``limit`` standard deviations while
    the detector flags nothing, or while its alarms have become the rule (``alarm_rate`` at or above
    ``persist``: a new normal over the long horizon, not an episode). A shift that an ongoing
    anomaly explains is the fault itself: retraining on it would teach the detector that the fault
    is normal, so it is not advised. ``retrain_shift`` is the shift when a retrain is advised and 0
    otherwise (what the drift warning watches).
    """

    mean: FloatArray
    std: FloatArray
    span: int = 2000
    limit: float = 2.0
    persist: float = 0.8
    shift: FloatArray | None = None
    rate: float = 0.0
    rows: int = 0
    anomaly_rows: int = 0

    def update(self, X: FloatArray, flags: npt.NDArray[np.bool_] | None = None) -> None:
        a = 2.0 / (self.span + 1.0)
        z = (X - self.mean) / self.std
        w = (1.0 - a) ** np.arange(X.shape[0] - 1, -1, -1)
        start = np.zeros(X.shape[1]) if self.shift is None else self.shift
        self.shift = start * (1.0 - a) ** X.shape[0] + a * (w[:, None] * z).sum(axis=0)
        if flags is not None and flags.size:
            self.rate = self.rate * (1.0 - a) ** flags.size + a * float((w * flags).sum())
            normal = np.flatnonzero(~flags)
            self.anomaly_rows = self.anomaly_rows + flags.size if not normal.size else flags.size - 1 - int(normal[-1])
        self.rows += X.shape[0]

    def report(self, names: list[str]) -> dict[str, Any]:
        shift = np.zeros(len(names)) if self.shift is None else np.abs(self.shift)
        worst = int(np.argmax(shift)) if shift.size else 0
        warm = self.rows >= self.span // 4
        value = round(float(shift[worst]), 3) if shift.size else 0.0
        explained = self.anomaly_rows > 0 and self.rate < self.persist  # an ongoing episode: the shift is the fault
        drifting = bool(warm and value > self.limit and not explained)
        return {"input_shift": value, "input": names[worst] if names else None, "alarm_rate": round(self.rate, 4),
                "anomaly_rows": self.anomaly_rows, "drifting": drifting, "retrain_shift": value if drifting else 0.0,
                "rows": self.rows}


@dataclass
class Runner(ABC):
    """One analytic's online state for one scope (a twin, or the fleet ``*``): its fitted model (None while
    it learns), the registry version that model is (None until registered), drift, training buffer."""

    spec: AnalyticSpec
    scope: str
    version: int | None = None
    model: Any = None
    drift: Drift | None = None
    drifting: bool = False  # what the last drift report said (a change is kept with the version)
    _buffer: list[FloatArray] = field(default_factory=list)
    _buffer_ts: list[IntArray] = field(default_factory=list)

    @property
    def fitted(self) -> bool:
        return self.model is not None

    def buffered(self) -> int:
        return sum(b.shape[0] for b in self._buffer)

    def take_training(self, ts: IntArray, X: FloatArray) -> tuple[IntArray, FloatArray, FloatArray | None]:
        """Buffer rows until ``train_rows`` are there; returns (rest ts, rest rows, training rows or None).

        With context inputs only rows with the machine turning are training rows."""
        if not self.spec.context:
            return self._take_all(ts, X)
        from tvilling.analytics.detectors.operating_point import OperatingPoint

        k = len(self.spec.inputs)
        before_fit = OperatingPoint(self.spec.context, running_above=self.spec.params.get("running_above"))
        turning = np.flatnonzero(before_fit.turning(X[:, k:]))
        take = turning[:self.spec.train_rows - self.buffered()]
        self._buffer.append(X[take])
        self._buffer_ts.append(ts[take])
        if self.buffered() < self.spec.train_rows:
            return ts[:0], X[:0], None
        train = np.vstack(self._buffer)
        self.train_ts = np.concatenate(self._buffer_ts)
        self._buffer, self._buffer_ts = [], []
        cut = int(take[-1]) + 1 if take.size else 0
        return ts[cut:], X[cut:], train

    def _operating_point(self, X: FloatArray) -> tuple[FloatArray, Any]:
        """Split the context off the rows and fit the operating point on the training rows."""
        if not self.spec.context:
            return X, None
        from tvilling.analytics.detectors.operating_point import OperatingPoint, parse_exponents

        k = len(self.spec.inputs)
        p = self.spec.params
        op = OperatingPoint(self.spec.context, names=list(self.spec.inputs),
                            exponents=parse_exponents(p.get("exponents"), self.spec.inputs, self.spec.context),
                            running_above=p.get("running_above")).fit(X[:, :k], X[:, k:])
        turning = op.turning(X[:, k:])
        return op.normalise(X[turning, :k], X[turning, k:]), op

    def _judged(self, ts: IntArray, X: FloatArray, op: Any) -> tuple[IntArray, FloatArray]:
        """The rows that can be judged at their operating point, normalised to the reference one; sets
        :attr:`scoring`, which says (for the last row) whether scoring runs or why it is suspended."""
        k = len(self.spec.inputs)
        if op is None:
            self.scoring = "active"
            return ts, X[:, :k]
        C = X[:, k:]
        status = op.status(C)
        last = str(status[-1])
        first = self.spec.context[0]
        if last == "stopped":
            self.scoring = f"suspended: stopped ({first} {C[-1, 0]:.4g})"
        elif last == "unlearned":
            lo, hi = (float(op.ref_[0] * np.exp(b)) for b in (op.lo_[0], op.hi_[0]))
            self.scoring = (f"suspended: operating point not learned ({first} {C[-1, 0]:.4g}; "
                            f"trained at {lo:.4g}–{hi:.4g})")
        else:
            self.scoring = "active"
        ok = status == "ok"
        return ts[ok], op.normalise(X[ok, :k], C[ok])

    def _take_all(self, ts: IntArray, X: FloatArray) -> tuple[IntArray, FloatArray, FloatArray | None]:
        need = self.spec.train_rows - self.buffered()
        self._buffer.append(X[:need])
        self._buffer_ts.append(ts[:need])
        if self.buffered() < self.spec.train_rows:
            return ts[:0], X[:0], None
        train = np.vstack(self._buffer)
        self.train_ts = np.concatenate(self._buffer_ts)
        self._buffer, self._buffer_ts = [], []
        return ts[need:], X[need:], train

    @abstractmethod
    def fit(self, X: FloatArray) -> dict[str, Any]:
        """Fit on training rows (assumed normal); returns the version's metrics."""

    def artifact(self) -> Any:
        """What a version stores: the fitted model and the training statistics drift is judged by."""
        drift = None if self.drift is None else (self.drift.mean, self.drift.std)
        return {"model": self.model, "drift": drift, "family": getattr(self, "family", None)}

    def load(self, artifact: Any, version: int) -> None:
        self.model = artifact["model"]
        self.version = version
        self.family = artifact.get("family")
        if artifact.get("drift") is not None:
            mean, std = artifact["drift"]
            self.drift = Drift(mean, std)

    @abstractmethod
    def run(self, ts: IntArray, X: FloatArray) -> list[Output]:
        """Outputs for new rows (learning state advances)."""


class AnomalyRunner(Runner):
    """``mewma`` (MultivariateDetector) or ``univariate`` (UnivariateDetector), fitted on the first rows."""

    def fit(self, X: FloatArray) -> dict[str, Any]:
        X, op = self._operating_point(X)
        params = {k: v for k, v in self.spec.params.items() if k not in ("exponents", "running_above")}
        if self.spec.method == "mewma":
            from tvilling.analytics.detectors.multivariate import MultivariateDetector

            family_file = params.pop("family_classifier", None)
            self.family = load_family(family_file, len(self.spec.inputs)) if family_file else None
            if self.family is not None and self.family.get("scales") and "scales" not in params:
                params["scales"] = self.family["scales"]  # deviations on the scale the classifier was trained on

            det: Any = MultivariateDetector(names=list(self.spec.inputs), **params).fit(X)
            threshold = float(det.threshold_)  # the score is normalised already: 1.0 is the alarm level
        else:
            from tvilling.analytics.detectors.univariate import UnivariateDetector

            threshold = float(params.pop("threshold", 0.5))
            params.setdefault("warmup", int(X.shape[0]))  # the training rows are its warm-up
            det = UnivariateDetector(**params)
            train_ts = getattr(self, "train_ts", None)  # the time of day matters to it (hour-of-day novelty)
            det.learn_many(X[:, 0], ts=None if train_ts is None or len(train_ts) != len(X) else train_ts / 1e6)
        self.model = (det, threshold, op)
        std = X.std(axis=0)
        self.drift = Drift(X.mean(axis=0), np.where(std > 1e-12, std, 1.0))
        metrics: dict[str, Any] = {"threshold": threshold, "train_rows": int(X.shape[0])}
        if op is not None:
            metrics["operating_point"] = op.describe()
        return metrics

    def run(self, ts: IntArray, X: FloatArray) -> list[Output]:
        det, threshold, op = self.model if len(self.model) == 3 else (*self.model, None)  # older versions: no op
        ts, X = self._judged(ts, X, op)
        if not ts.size:
            return []
        family = getattr(self, "family", None) if self.spec.method == "mewma" else None
        deviations = None
        if family is not None:
            raw, deviations = det.score_details(X)
        elif self.spec.method == "mewma":
            raw = det.score_many(X)
        else:
            raw = det.score_many(X[:, 0], ts=ts / 1e6)
        score = np.maximum(np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=0.0, posinf=1e6), 0.0) / threshold
        # the multivariate detector holds an alarm a minimum number of rows once raised
        flags = np.asarray(det.decide_many(raw), dtype=bool) if self.spec.method == "mewma" else score >= 1.0
        if self.drift is not None:
            self.drift.update(X, flags)
        out: list[Output] = [("anomaly_score", ts, np.round(score, 6))]  # a column: every row goes to history
        before = getattr(self, "_flag", None)
        first = (not flags[0]) if before is None else before
        changes = np.flatnonzero(np.diff(np.r_[first, flags]))  # the flag is written when it changes
        out.extend(("anomaly", int(ts[i]), bool(flags[i])) for i in changes.tolist())
        self._flag = bool(flags[-1])
        if deviations is not None:
            out.extend(self._families(ts, flags, deviations))
        last = int(ts[-1])
        if self.spec.method == "mewma":
            if flags[-1] and hasattr(det, "explain"):
                shares = {k: round(float(v), 4) for k, v in det.explain(X[-1]).items()}
                out.append(("contributions", last, shares))
            elif changes.size and not flags[-1]:  # the anomaly ended: no signal drives anything now
                out.append(("contributions", last, None))
        return out


    def _families(self, ts: IntArray, flags: npt.NDArray[np.bool_], deviations: FloatArray) -> list[Output]:
        """``fault_family`` of each anomaly: classified from its first rows (the classifier's horizon), reset
        to null when it ends."""
        from tvilling.analytics.diagnostics import FamilyClassifier

        fam = self.family
        if fam is None:
            return []
        if not hasattr(self, "_onset"):
            self._onset: list[FloatArray] = []
            self._named = False
            self._was = False
            self._clf = FamilyClassifier.from_dict(fam["classifier"])
        horizon = int(fam.get("horizon", 15))
        if not self._was and not flags.any():
            return []
        out: list[Output] = []
        for i in range(ts.size):
            if flags[i]:
                if not self._was:
                    self._onset, self._named = [], False
                if not self._named:
                    self._onset.append(deviations[i])
                    if len(self._onset) >= horizon:
                        name, conf = self._clf.classify_rows(np.vstack(self._onset))
                        out.append(("fault_family", int(ts[i]), name))
                        self._named = True
                        self.family_confidence = round(float(conf), 3)
            elif self._was:
                if not self._named and self._onset:  # a short anomaly: name it from what it showed
                    name, conf = self._clf.classify_rows(np.vstack(self._onset))
                    self.family_confidence = round(float(conf), 3)
                    out.append(("fault_family", int(ts[i]), name))
                self._onset, self._named = [], False
            self._was = bool(flags[i])
        return out


def load_family(path: Any, inputs: int) -> dict[str, Any]:
    """A fault-family classifier file (``tvilling analytics family-train``): classifier, scales, horizon."""
    import json
    from pathlib import Path

    from tvilling.core.errors import Invalid

    try:
        doc = json.loads(Path(str(path)).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Invalid(f"family classifier {path}: cannot read it ({exc})", field="params.family_classifier",
                      rule="file") from None
    if not isinstance(doc, dict) or "classifier" not in doc:
        raise Invalid(f"family classifier {path}: not a file written by `tvilling analytics family-train`",
                      field="params.family_classifier", rule="file")
    if doc.get("inputs") is not None and len(doc["inputs"]) != inputs:
        raise Invalid(f"family classifier {path} was trained on {len(doc['inputs'])} sensors; this analytic "
                      f"has {inputs} inputs", field="params.family_classifier", rule="inputs")
    return doc


class TrendRulRunner(Runner):
    """Remaining life from a degradation indicator's trend, extrapolated to ``failure_level``.

    The indicator's baseline is the median of the first ``train_rows`` rows. Over the last
    ``window`` rows (default 300), ``log(indicator − baseline·(1 − floor))`` is fitted as a
    straight line in time (exponential growth, the usual shape of bearing wear). The point
    RUL is where the line reaches the failure level; p10/p90 use the slope ± 1.2816
    standard errors. Until the window holds ``min_rows`` rows (default 30), nothing is
    written. While the growth is not significant (slope below ``t_min`` = 3 standard errors),
    or the line reaches the failure level only beyond ``max_rul``, there is no credible
    trend: ``rul``, ``rul_p10`` and ``rul_p90`` are written as null, which removes them from the
    twin (and the analytic's marker says ``"trend": false``), never a placeholder number.
    ``health`` (1 = as new, 0 = failed) is the lower of how far the fitted level is from
    the failure level, ``(failure level − level now) / (failure level − baseline)``, and the
    remaining life as a share of ``health_horizon`` (default ``max_rul``): exponential wear keeps
    the level low until shortly before failure, so the level alone would read "healthy" beside a
    remaining life of hours. With context inputs the
    indicator is taken at the reference operating point (see
    :mod:`tvilling.analytics.detectors.operating_point`), so a slower machine's lower
    vibration reads as what it is, not as a healed bearing, and rows of a stopped machine
    are left out. Time is the readings' time × ``time_scale`` (plant seconds per wall
    second, for accelerated simulations), reported in ``unit`` (hour by default).
    """

    def fit(self, X: FloatArray) -> dict[str, Any]:
        X, op = self._operating_point(X)
        base = float(np.median(X[:, 0]))
        self.model = {"baseline": base, "op": op}
        self.drift = None
        window = int(self.spec.params.get("window", 300))
        self._hist_t: deque[float] = deque(maxlen=window)
        self._hist_v: deque[float] = deque(maxlen=window)
        metrics: dict[str, Any] = {"baseline": base, "train_rows": int(X.shape[0])}
        if op is not None:
            metrics["operating_point"] = op.describe()
        return metrics

    def run(self, ts: IntArray, X: FloatArray) -> list[Output]:
        p = self.spec.params
        ts, X = self._judged(ts, X, self.model.get("op"))
        if not ts.size:
            return []
        if not hasattr(self, "_hist_t"):  # loaded from the registry: the window starts empty
            window = int(p.get("window", 300))
            self._hist_t, self._hist_v = deque(maxlen=window), deque(maxlen=window)
        scale = float(p.get("time_scale", 1.0)) / US_PER_UNIT[str(p.get("unit", "hour"))]
        self._hist_t.extend((ts.astype(np.float64) * scale).tolist())
        self._hist_v.extend(X[:, 0].tolist())
        t = np.asarray(self._hist_t)
        v = np.asarray(self._hist_v)
        level = float(p["failure_level"])
        max_rul = float(p.get("max_rul", 10_000.0))
        horizon = float(p.get("health_horizon", max_rul))
        base = float(self.model["baseline"])
        floor = base * 0.9 if base > 0 else 0.0
        ok = np.isfinite(v) & (v > floor)
        now = int(ts[-1])
        if ok.sum() < int(p.get("min_rows", 30)):
            return []
        tt, y = t[ok] - t[ok][-1], np.log(v[ok] - floor)
        n = tt.size
        A = np.vstack([np.ones(n), tt]).T
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        resid = y - A @ coef
        dof = max(n - 2, 1)
        sxx = float(((tt - tt.mean()) ** 2).sum())
        se = math.sqrt(float(resid @ resid) / dof / sxx) if sxx > 0 else math.inf
        fitted_now = math.exp(float(coef[0])) + floor
        target = math.log(max(level - floor, 1e-12))
        self.trend = True
        if fitted_now >= level:
            return [("rul", now, 0.0), ("rul_p10", now, 0.0), ("rul_p90", now, 0.0), ("health", now, 0.0)]
        span = level - base
        wear = 1.0 if span <= 0 else min(max((level - fitted_now) / span, 0.0), 1.0)

        def life(slope: float) -> float:
            return math.inf if not slope > 0 else max((target - float(coef[0])) / slope, 0.0)

        slope = float(coef[1])
        rul = life(slope)
        if not (math.isfinite(se) and slope > float(p.get("t_min", 3.0)) * se) or rul > max_rul:
            self.trend = False  # the marker says so; null removes rul, rul_p10 and rul_p90 from the twin
            return [("rul", now, None), ("rul_p10", now, None), ("rul_p90", now, None), ("health", now, round(wear, 4))]
        p10 = min(life(slope + 1.2816 * se), rul)
        p90 = min(max(life(slope - 1.2816 * se), rul), max_rul)
        return [("rul", now, round(rul, 3)), ("rul_p10", now, round(p10, 3)),
                ("rul_p90", now, round(p90, 3)), ("health", now, round(min(wear, rul / horizon, 1.0), 4))]


class FleetRulRunner(Runner):
    """``rul-fleet``: one RulModel for the fleet (trained from history), applied per twin on its window.

    The twin's rows are numbered from its first stored row (the cycle count); the window
    kept is the longest feature window, so each new row is predicted from its history.
    """

    cycles: int = 0
    seeded: bool = False

    def fit(self, X: FloatArray) -> dict[str, Any]:
        from tvilling.core.errors import Invalid

        raise Invalid(f"analytic {self.spec.name!r} is a fleet model: it is trained from run-to-failure "
                      "histories (tvilling analytics train, POST /api/analytics/{name}/train), not per twin",
                      rule="fleet")

    def _window(self) -> deque[FloatArray]:
        if not hasattr(self, "_rows"):
            self._rows: deque[FloatArray] = deque(maxlen=max(self.model.config.windows) + 1)
        return self._rows

    def seed(self, X: FloatArray) -> None:
        """The twin's earlier rows (from history): they set the cycle count and fill the window."""
        self.seeded = True
        rows = self._window()
        start = self.cycles
        self.cycles += X.shape[0]
        for i, row in enumerate(X[-(rows.maxlen or 1):]):
            rows.append(np.r_[0.0, float(start + X.shape[0] - min(X.shape[0], rows.maxlen or 1) + i + 1),
                              _layout(row)])

    def run(self, ts: IntArray, X: FloatArray) -> list[Output]:
        model = self.model
        if model is None:
            return []
        rows = self._window()
        for row in X:
            self.cycles += 1
            rows.append(np.r_[0.0, float(self.cycles), _layout(row)])
        window = np.vstack(list(rows))
        pred = model.predict_many(window)
        clip = float(model.config.clip)
        now = int(ts[-1])
        point, p10, p90 = float(pred.point[-1]), float(pred.p10[-1]), float(pred.p90[-1])
        return [("rul", now, round(point, 3)), ("rul_p10", now, round(min(p10, point), 3)),
                ("rul_p90", now, round(max(p90, point), 3)), ("health", now, round(min(point / clip, 1.0), 4))]


def _layout(row: FloatArray) -> FloatArray:
    """Inputs (settings first) in the RUL model's row layout: three setting columns, then sensors."""
    return row


def make_runner(spec: AnalyticSpec, scope: str) -> Runner:
    """A fresh (unfitted) runner of ``spec``'s method for ``scope``."""
    if spec.method in ("mewma", "univariate"):
        return AnomalyRunner(spec, scope)
    if spec.method == "rul-trend":
        return TrendRulRunner(spec, scope)
    return FleetRulRunner(spec, scope)
