"""Judging sensor values at their operating point: speed, load and whether the machine turns at all.

A vibration band measured at 900 rpm is not comparable with one at 1500 rpm: rotating machines'
vibration levels scale with a power of the shaft speed (order-proportional amplitudes). A
detector trained at one speed that sees the machine slow down reads "everything fell below
normal" as an anomaly. :class:`OperatingPoint` removes the operating point from the inputs
before a detector sees them:

* each positive input is modelled as ``x = a · Π_j (c_j / c_ref,j)^b_j`` over the context inputs
  ``c`` (speed, load, …), fitted in log space on the training rows by ridge regression towards
  declared exponents (physics, e.g. 1×-band amplitude ∝ speed²) — training rows spanning several
  operating points teach the exponents, training rows at one point keep the declared ones;
  inputs that take zero or negative values are modelled additively, ``x = a + Σ_j b_j · log(c_j / c_ref,j)``;
* :meth:`OperatingPoint.normalise` returns the inputs as they would read at the reference
  operating point (the training median), so the detector's statistics, drift and contributions
  keep their units;
* :meth:`OperatingPoint.status` says which rows can be judged at all: rows where the first
  context input is at or below ``running_above`` (default 10 % of its reference) are a stopped
  machine, and rows outside the learned range of the context (with a margin) are an operating
  point the model has never seen, unless every input's exponents were declared.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> speed = np.r_[np.full(50, 1500.0), np.full(50, 900.0)]
>>> band = 0.1 * (speed / 1500.0) ** 2 * np.exp(0.02 * rng.standard_normal(100))
>>> op = OperatingPoint(["speed"]).fit(band[:, None], speed[:, None])
>>> round(float(op.coef_[0, 0]), 1)        # learned: the band goes with speed squared
2.0
>>> x = op.normalise(np.array([[0.036]]), np.array([[900.0]]))
>>> float(op.ref_[0]), round(float(x[0, 0]), 3)   # as it would read at the reference (median) speed
(1200.0, 0.064)
>>> op.status(np.array([[0.0], [1200.0], [3000.0]])).tolist()
['stopped', 'ok', 'unlearned']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]
__all__ = ["OperatingPoint", "parse_exponents"]
RIDGE = 1e-3  # penalty per training row pulling the exponents towards the declared ones
MARGIN = np.log(1.15)  # how far beyond the learned context range (in log) rows are still judged
SPREAD = np.log(1.05)  # a context whose training rows span less than this taught nothing about it


def parse_exponents(doc: Any, inputs: Sequence[str], context: Sequence[str]) -> dict[str, dict[str, float]]:
    """Declared exponents as ``{input: {context: b}}``; ``{input: b}`` applies to the first context input.

    Raises ``ValueError`` naming what is wrong (an unknown input or context, a non-number).
    """
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise ValueError("exponents must be a table of input = exponent (or input = {context = exponent})")
    out: dict[str, dict[str, float]] = {}
    for name, value in doc.items():
        if name not in inputs:
            raise ValueError(f"exponents names {name!r}, which is not one of the inputs {list(inputs)}")
        per = value if isinstance(value, Mapping) else {context[0]: value}
        for ctx, b in per.items():
            if ctx not in context:
                raise ValueError(f"exponents of {name!r} name {ctx!r}, which is not a context input {list(context)}")
            if isinstance(b, bool) or not isinstance(b, int | float) or not np.isfinite(b):
                raise ValueError(f"exponents of {name!r} for {ctx!r} must be a number, not {b!r}")
            out.setdefault(str(name), {})[str(ctx)] = float(b)
    return out


@dataclass
class OperatingPoint:
    """Context-conditioning of a detector's inputs (see the module notes).

    ``context`` names the context inputs (columns of ``C``); ``exponents`` the declared ones per input
    name (``names`` gives the inputs' order); ``running_above`` the level of the first context input at
    or below which the machine counts as stopped (``None``: 10 % of its reference).
    """

    context: Sequence[str]
    names: Sequence[str] = ()
    exponents: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    running_above: float | None = None
    ref_: FloatArray | None = field(default=None, init=False, repr=False)
    coef_: FloatArray | None = field(default=None, init=False, repr=False)
    positive_: npt.NDArray[np.bool_] | None = field(default=None, init=False, repr=False)
    lo_: FloatArray | None = field(default=None, init=False, repr=False)
    hi_: FloatArray | None = field(default=None, init=False, repr=False)
    declared_: bool = field(default=False, init=False)

    def _prior(self, k: int) -> FloatArray:
        names = list(self.names) or [f"s{i}" for i in range(k)]
        prior = np.zeros((k, len(self.context)))
        for i, name in enumerate(names[:k]):
            for j, ctx in enumerate(self.context):
                prior[i, j] = float(self.exponents.get(name, {}).get(ctx, 0.0))
        return prior

    def turning(self, C: FloatArray) -> npt.NDArray[np.bool_]:
        """Rows whose context can be judged: finite, positive, the first input above the running level."""
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        ok = np.isfinite(C).all(axis=1) & (C > 0).all(axis=1)
        level = self.running_above
        if level is None and self.ref_ is not None:
            level = 0.1 * float(self.ref_[0])
        if level is not None:
            ok &= C[:, 0] > level
        return np.asarray(ok, dtype=bool)

    def fit(self, X: npt.ArrayLike, C: npt.ArrayLike) -> OperatingPoint:
        """Learn the reference point, the exponents and the context range from training rows (turning only)."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        if C.shape[1] != len(self.context):
            raise ValueError(f"expected {len(self.context)} context columns, got {C.shape[1]}")
        keep = self.turning(C)
        if keep.sum() < 2:
            raise ValueError("fewer than two training rows with the machine turning: nothing to learn from")
        X, C = X[keep], C[keep]
        self.ref_ = np.median(C, axis=0)
        L = np.log(C / self.ref_)
        Lc = L - L.mean(axis=0)
        prior = self._prior(X.shape[1])
        positive = np.asarray((X > 0).all(axis=0), dtype=bool)
        self.positive_ = positive
        Y = np.where(positive[None, :], np.log(np.where(X > 0, X, 1.0)), X)
        Yc = Y - Y.mean(axis=0)
        lam = RIDGE * X.shape[0]
        A = Lc.T @ Lc + lam * np.eye(L.shape[1])
        # ridge towards the declared exponents: argmin |Yc − Lc·b|² + λ|b − b0|², one column per input
        self.coef_ = np.linalg.solve(A, Lc.T @ Yc + lam * prior.T).T
        self.lo_, self.hi_ = L.min(axis=0), L.max(axis=0)
        declared = {n for n, per in self.exponents.items() if per}
        self.declared_ = bool(self.names) and all(n in declared for n in self.names)
        return self

    def normalise(self, X: npt.ArrayLike, C: npt.ArrayLike) -> FloatArray:
        """The inputs as they would read at the reference operating point."""
        if self.ref_ is None or self.coef_ is None or self.positive_ is None:
            raise RuntimeError("operating point is not fitted")
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            L = np.log(C / self.ref_)
        shift = L @ self.coef_.T  # rows × inputs: the operating point's effect, in log (or additive) units
        shift = np.nan_to_num(shift, nan=0.0, posinf=0.0, neginf=0.0)
        return np.asarray(np.where(self.positive_[None, :], X * np.exp(-shift), X - shift), dtype=np.float64)

    def status(self, C: npt.ArrayLike) -> StrArray:
        """Per row: ``ok``, ``stopped`` (not turning) or ``unlearned`` (outside the learned context range)."""
        if self.lo_ is None or self.hi_ is None:
            raise RuntimeError("operating point is not fitted")
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        turning = self.turning(C)
        out = np.where(turning, "ok", "stopped").astype("<U9")
        if not self.declared_:
            with np.errstate(divide="ignore", invalid="ignore"):
                L = np.log(np.where(C > 0, C, np.nan) / self.ref_)
            # a context the training rows did not vary counts as learned only at its reference point
            lo = np.minimum(self.lo_, -SPREAD) - MARGIN
            hi = np.maximum(self.hi_, SPREAD) + MARGIN
            outside = ((L - lo < 0) | (L - hi > 0)).any(axis=1)
            out[turning & outside] = "unlearned"
        return out

    def describe(self) -> dict[str, Any]:
        """What was learned, for the analytic version's metrics."""
        if self.ref_ is None or self.coef_ is None:
            return {}
        names = list(self.names) or [f"s{i}" for i in range(self.coef_.shape[0])]
        return {"reference": {c: round(float(r), 4) for c, r in zip(self.context, self.ref_, strict=True)},
                "exponents": {n: {c: round(float(b), 3) for c, b in zip(self.context, row, strict=True)}
                              for n, row in zip(names, self.coef_, strict=True)}}
