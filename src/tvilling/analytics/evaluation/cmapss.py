"""NASA C-MAPSS turbofan data: loaders, RUL labels, metrics and unit-grouped CV folds.

Files are NASA's ``train_FD00x.txt``, ``test_FD00x.txt`` and ``RUL_FD00x.txt``: 26
whitespace-separated columns per row (unit, cycle, 3 operating settings, 21 sensors).
The evaluation convention (see the dataset README) is one prediction per test unit at
its last cycle, RMSE on the raw truth and on the truth clipped at 125, and the PHM08
score, where late predictions cost more than early ones.

>>> import numpy as np
>>> rmse(np.array([10.0, 20.0]), np.array([10.0, 20.0]))
0.0
>>> round(phm08(np.array([13.0]), np.array([0.0])), 4)  # 13 cycles late
2.6693
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from tvilling.core.errors import Invalid, NotFound

SUBSETS = ("FD001", "FD002", "FD003", "FD004")
N_COLUMNS = 26
UNIT, CYCLE = 0, 1
SETTINGS = slice(2, 5)
SENSORS = slice(5, None)  # every column after the settings (21 in C-MAPSS)
CLIP = 125.0

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def default_dir() -> Path:
    """Folder of the C-MAPSS files: ``$TVILLING_DATASETS/cmapss``, else ``/work/shared/datasets/cmapss``."""
    parent = os.environ.get("TVILLING_DATASETS", "/work/shared/datasets")
    return Path(parent) / "cmapss"


def _check_subset(subset: str) -> None:
    if subset not in SUBSETS:
        raise Invalid(f"unknown C-MAPSS subset {subset!r}", field="subset", rule=f"one of {SUBSETS}")


def load_rows(path: Path) -> FloatArray:
    """Read one train/test file into an ``(n, 26)`` float array sorted by (unit, cycle)."""
    if not path.is_file():
        raise NotFound(f"C-MAPSS file not found: {path}", path=str(path))
    rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if rows.shape[1] != N_COLUMNS:
        raise Invalid(f"{path.name} has {rows.shape[1]} columns, expected {N_COLUMNS}", path=str(path))
    order = np.lexsort((rows[:, CYCLE], rows[:, UNIT]))
    return rows[order]


def load_train(subset: str, data_dir: Path | None = None) -> FloatArray:
    """Rows of ``train_<subset>.txt`` (run-to-failure trajectories)."""
    _check_subset(subset)
    return load_rows((data_dir or default_dir()) / f"train_{subset}.txt")


def load_test(subset: str, data_dir: Path | None = None) -> FloatArray:
    """Rows of ``test_<subset>.txt`` (trajectories cut off before failure)."""
    _check_subset(subset)
    return load_rows((data_dir or default_dir()) / f"test_{subset}.txt")


def load_truth(subset: str, data_dir: Path | None = None) -> FloatArray:
    """True RUL after the last cycle of each test unit, in unit order (``RUL_<subset>.txt``)."""
    _check_subset(subset)
    path = (data_dir or default_dir()) / f"RUL_{subset}.txt"
    if not path.is_file():
        raise NotFound(f"C-MAPSS file not found: {path}", path=str(path))
    return np.loadtxt(path, dtype=np.float64, ndmin=1).reshape(-1)


def unit_bounds(units: NDArray[np.float64] | IntArray) -> tuple[IntArray, IntArray]:
    """Start and end (exclusive) row index of each unit's contiguous block of rows."""
    u = np.asarray(units)
    if u.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    change = np.flatnonzero(u[1:] != u[:-1]) + 1
    starts = np.concatenate(([0], change)).astype(np.int64)
    ends = np.concatenate((change, [u.size])).astype(np.int64)
    return starts, ends


def last_rows(rows: FloatArray) -> IntArray:
    """Index of the last row of each unit (rows sorted by unit, then cycle)."""
    return unit_bounds(rows[:, UNIT])[1] - 1


def train_rul(rows: FloatArray, clip: float | None = CLIP) -> FloatArray:
    """RUL label of each training row, ``max_cycle(unit) - cycle``, optionally capped at ``clip``."""
    starts, ends = unit_bounds(rows[:, UNIT])
    max_cycle = np.repeat(rows[ends - 1, CYCLE], ends - starts)
    rul = max_cycle - rows[:, CYCLE]
    return np.minimum(rul, clip) if clip is not None else rul


def _pair(pred: FloatArray, truth: FloatArray) -> tuple[FloatArray, FloatArray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(truth, dtype=np.float64).reshape(-1)
    if p.shape != t.shape or p.size == 0:
        raise Invalid("predictions and truth must be non-empty and of equal length", pred=p.size, truth=t.size)
    return p, t


def rmse(pred: FloatArray, truth: FloatArray) -> float:
    """Root mean squared error, ``sqrt(mean((pred - truth)**2))``."""
    p, t = _pair(pred, truth)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def phm08(pred: FloatArray, truth: FloatArray) -> float:
    """PHM08 score: sum of ``exp(-d/13) - 1`` for early (d < 0) and ``exp(d/10) - 1`` for late, d = pred - truth."""
    p, t = _pair(pred, truth)
    d = p - t
    return float(np.sum(np.where(d < 0, np.expm1(-d / 13.0), np.expm1(d / 10.0))))


def evaluate(pred_last: FloatArray, truth: FloatArray, clip: float = CLIP) -> dict[str, float]:
    """Score one prediction per unit against the raw truth and the truth clipped at ``clip``."""
    clipped = np.minimum(np.asarray(truth, dtype=np.float64), clip)
    return {
        "rmse_raw": rmse(pred_last, truth),
        "rmse_clipped": rmse(pred_last, clipped),
        "phm08_raw": phm08(pred_last, truth),
        "phm08_clipped": phm08(pred_last, clipped),
    }


def unit_folds(rows: FloatArray, k: int = 5, seed: int = 0) -> list[tuple[IntArray, IntArray]]:
    """Unit-grouped K-fold split: ``k`` pairs of (train row indices, validation row indices).

    Every unit's rows fall wholly on one side, so no trajectory leaks across folds.
    """
    units = np.unique(rows[:, UNIT])
    if not 2 <= k <= units.size:
        raise Invalid(f"k must be between 2 and the number of units ({units.size})", field="k")
    shuffled = np.random.default_rng(seed).permutation(units)
    groups = np.array_split(shuffled, k)
    folds = []
    for group in groups:
        held = np.isin(rows[:, UNIT], group)
        folds.append((np.flatnonzero(~held).astype(np.int64), np.flatnonzero(held).astype(np.int64)))
    return folds


def truncate_units(rows: FloatArray, seed: int = 0, min_cycles: int = 31) -> tuple[FloatArray, FloatArray]:
    """Cut each run-to-failure unit at a random cycle, as the official test sets are cut.

    Returns the truncated rows and the true RUL after each unit's new last row. The cut
    keeps at least ``min_cycles`` cycles (or the whole life when shorter) and is drawn
    uniformly, so the truth spreads from 0 up to the life minus ``min_cycles``.
    """
    starts, ends = unit_bounds(rows[:, UNIT])
    lives = ends - starts
    rng = np.random.default_rng(seed)
    low = np.minimum(min_cycles, lives)
    keep = rng.integers(low, lives + 1)
    offsets = np.arange(rows.shape[0]) - np.repeat(starts, lives)
    mask = offsets < np.repeat(keep, lives)
    truth = (lives - keep).astype(np.float64)
    return rows[mask], truth


class RulRegressor(Protocol):
    """What :func:`cross_validate` needs: fit on rows and RUL, predict every row."""

    def learn_many(self, rows: FloatArray, rul: FloatArray) -> object: ...

    def predict_last_point(self, rows: FloatArray) -> FloatArray: ...


def cross_validate(
    make: Callable[[], RulRegressor], rows: FloatArray, k: int = 5, seed: int = 0, cuts: int = 3
) -> dict[str, float]:
    """Unit-grouped K-fold CV on training rows with the test convention.

    Each held-out unit is cut ``cuts`` times at random cycles (:func:`truncate_units`)
    and predicted at its last kept cycle; all predictions are pooled into one
    :func:`evaluate` result (plus ``folds`` and ``predictions``).
    """
    preds: list[FloatArray] = []
    truths: list[FloatArray] = []
    for f, (train_idx, val_idx) in enumerate(unit_folds(rows, k, seed)):
        train = rows[train_idx]
        model = make()
        model.learn_many(train, train_rul(train, None))
        for c in range(cuts):
            cut, truth = truncate_units(rows[val_idx], seed=seed * 1000 + f * 10 + c)
            preds.append(model.predict_last_point(cut))
            truths.append(truth)
    result = evaluate(np.concatenate(preds), np.concatenate(truths))
    result["folds"] = float(k)
    result["predictions"] = float(sum(p.size for p in preds))
    return result
