"""C-MAPSS FD001 through the platform: replay the training fleet, train RUL from the stored history,
replay the test engines and read the predictions off the twins (the issue's 'trained from history
stored in the platform, not only from files')."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared_data import datasets_dir
from tvilling.analytics.binding.lifecycle import backtest, train
from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.connect import replay as rp
from tvilling.models.builtin import builtin_documents

DATA = datasets_dir()
CMAPSS = DATA / "cmapss"
INPUTS = ["setting1", "setting2", "setting3"] + [f"s{i}" for i in range(1, 22)]
SPEC = {"name": "engine-rul", "model": "dtmi:tvilling:datasets:TurbofanEngine", "method": "rul-fleet",
        "inputs": INPUTS, "params": {"members": 4}}

pytestmark = pytest.mark.skipif(not (CMAPSS / "test_FD001.txt").is_file(),
                                reason=f"C-MAPSS FD001 not found under {CMAPSS} (set TVILLING_DATASETS)")


def load(p, path: Path) -> list[str]:
    series = rp.load(path, "cmapss")
    for s in series:
        p.twins.put(s.twin, {"model": s.model})
    rp.replay(p.pipeline, series)
    return [s.twin for s in series]


def test_fd001_rul_trained_from_platform_history(tmp_path):
    with build_platform(Settings(data_dir=tmp_path / "data", analytics=[SPEC])) as p:
        p.models.add(builtin_documents("datasets"))
        fleet = load(p, CMAPSS / "train_FD001.txt")
        spec = p.analytics.spec("engine-rul")
        version = train(spec, p.analytics_registry, p.history, fleet[:90], promote=True)
        assert version.metrics["units"] == 90
        report = backtest(spec, p.analytics_registry, p.history, version, fleet[90:])
        assert report["rmse_clipped_truth"] < 25 and 0.3 < report["p10_p90_coverage"] <= 1.0
        p.analytics.reload("engine-rul")
        engines = load(p, CMAPSS / "test_FD001.txt")
        truth = np.loadtxt(CMAPSS / "RUL_FD001.txt")
        by_unit = {int(t.rsplit("-", 1)[1]): p.twins.get(t).reported for t in engines}
        pred = np.array([by_unit[u + 1]["rul"] for u in range(truth.size)])
        lo = np.array([by_unit[u + 1]["rul_p10"] for u in range(truth.size)])
        hi = np.array([by_unit[u + 1]["rul_p90"] for u in range(truth.size)])
        rmse = float(np.sqrt(np.mean((pred - np.minimum(truth, 125)) ** 2)))
        # the evaluation command reaches 11.9 with the full ensemble; four members here, same features
        assert rmse < 13.5, rmse
        assert 0.5 < float(np.mean((truth >= lo) & (truth <= hi))) < 0.95
        assert all(r["analytics"]["engine-rul"]["version"] == 1 for r in by_unit.values())
