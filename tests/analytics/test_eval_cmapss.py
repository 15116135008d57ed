"""C-MAPSS evaluation: metric known points, unit-grouped folds, linear baseline and RUL model on FD001."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from tvilling.analytics.evaluation import cmapss as c
from tvilling.analytics.rul import LinearBaseline, RulModel
from tvilling.core.errors import Invalid, NotFound

DATA = Path(os.environ.get("TVILLING_DATASETS", "/work/shared/datasets")) / "cmapss"
needs_fd001 = pytest.mark.skipif(
    not all((DATA / f).is_file() for f in ("train_FD001.txt", "test_FD001.txt", "RUL_FD001.txt")),
    reason=f"C-MAPSS FD001 files not found under {DATA} (set TVILLING_DATASETS to the folder holding cmapss/)",
)


def test_perfect_prediction_scores_zero() -> None:
    truth = np.array([7.0, 50.0, 145.0])
    scores = c.evaluate(truth.copy(), truth)
    assert scores == {"rmse_raw": 0.0, "rmse_clipped": pytest.approx(20.0 / math.sqrt(3)), "phm08_raw": 0.0,
                      "phm08_clipped": pytest.approx(math.expm1(20 / 10))}
    assert c.rmse(truth, truth) == 0.0
    assert c.phm08(truth, truth) == 0.0


def test_phm08_hand_computed_early_and_late() -> None:
    truth = np.array([100.0, 100.0])
    # 13 cycles early: e^(13/13) - 1 = e - 1; 10 cycles late: e^(10/10) - 1 = e - 1
    assert c.phm08(np.array([87.0]), truth[:1]) == pytest.approx(math.e - 1)
    assert c.phm08(np.array([110.0]), truth[:1]) == pytest.approx(math.e - 1)
    # late costs more than early by the same amount: 20 late vs 20 early
    late = c.phm08(np.array([120.0]), truth[:1])
    early = c.phm08(np.array([80.0]), truth[:1])
    assert late == pytest.approx(math.exp(2.0) - 1) and early == pytest.approx(math.exp(20 / 13) - 1)
    assert late > early
    assert c.phm08(np.array([87.0, 110.0]), truth) == pytest.approx(2 * (math.e - 1))
    assert c.rmse(np.array([87.0, 110.0]), truth) == pytest.approx(math.sqrt((169 + 100) / 2))


def test_metric_rejects_mismatched_lengths() -> None:
    with pytest.raises(Invalid):
        c.rmse(np.array([1.0, 2.0]), np.array([1.0]))


def _toy_rows(lives: list[int]) -> np.ndarray:
    blocks = []
    for unit, life in enumerate(lives, start=1):
        block = np.zeros((life, 26))
        block[:, 0] = unit
        block[:, 1] = np.arange(1, life + 1)
        block[:, 5] = np.arange(life, dtype=float)
        blocks.append(block)
    return np.vstack(blocks)


def test_train_rul_and_truncation() -> None:
    rows = _toy_rows([3, 2])
    assert c.train_rul(rows, None).tolist() == [2.0, 1.0, 0.0, 1.0, 0.0]
    assert c.train_rul(_toy_rows([200]))[:2].tolist() == [125.0, 125.0]
    cut, truth = c.truncate_units(_toy_rows([50, 80]), seed=1)
    ends = c.last_rows(cut)
    assert truth.tolist() == (np.array([50, 80]) - cut[ends, 1]).tolist()


def test_unit_folds_group_whole_units() -> None:
    rows = _toy_rows([5, 6, 7, 8, 9])
    folds = c.unit_folds(rows, k=3, seed=0)
    held = np.concatenate([val for _, val in folds])
    assert sorted(held.tolist()) == list(range(rows.shape[0]))
    for train, val in folds:
        assert not set(rows[train, 0]) & set(rows[val, 0])
    with pytest.raises(Invalid):
        c.unit_folds(rows, k=6)


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        c.load_train("FD001", tmp_path)
    with pytest.raises(Invalid):
        c.load_train("FD009", tmp_path)


# The linear baseline (OLS on the 3 settings + 21 sensors of the current row, target
# min(RUL, 125), prediction floored at 0, scored at each test unit's last cycle).
# NOTE: the dataset README has no baseline table; these are the figures measured for
# this baseline and recorded in the report, so the test pins them to rounding.
LINEAR_FD001 = {"rmse_raw": 21.90, "rmse_clipped": 20.83, "phm08_raw": 1321.2, "phm08_clipped": 1258.5}


@needs_fd001
def test_linear_baseline_reproduces_table_fd001() -> None:
    train = c.load_train("FD001", DATA)
    test = c.load_test("FD001", DATA)
    truth = c.load_truth("FD001", DATA)
    assert train.shape == (20631, 26) and truth.size == 100
    model = LinearBaseline().learn_many(train, c.train_rul(train))
    scores = c.evaluate(model.predict_last_point(test), truth)
    print("linear FD001", {k: round(v, 2) for k, v in scores.items()})
    assert scores["rmse_raw"] == pytest.approx(LINEAR_FD001["rmse_raw"], abs=0.01)
    assert scores["rmse_clipped"] == pytest.approx(LINEAR_FD001["rmse_clipped"], abs=0.01)
    assert scores["phm08_raw"] == pytest.approx(LINEAR_FD001["phm08_raw"], abs=0.1)
    assert scores["phm08_clipped"] == pytest.approx(LINEAR_FD001["phm08_clipped"], abs=0.1)


MODEL_FD001_RMSE_CLIPPED_BOUND = 13.0  # measured 11.89 (RulConfig defaults, seed 0)


@needs_fd001
def test_rul_model_fd001_test_rmse() -> None:
    train = c.load_train("FD001", DATA)
    test = c.load_test("FD001", DATA)
    truth = c.load_truth("FD001", DATA)
    model = RulModel().learn_many(train, c.train_rul(train, None))
    pred = model.predict_last(test)
    scores = c.evaluate(pred.point, truth)
    print("RulModel FD001", {k: round(v, 2) for k, v in scores.items()})
    assert np.all(pred.p10 <= pred.point) and np.all(pred.point <= pred.p90)
    assert scores["rmse_clipped"] < MODEL_FD001_RMSE_CLIPPED_BOUND
