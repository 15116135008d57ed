"""`tvilling eval cmapss`: the C-MAPSS protocol end to end, over one or more seeds.

With the subset's test files present (FD001 here), the model trains on every training
unit and predicts each test unit at its last cycle; without them (FD002–FD004 in the
development data) it is scored by unit-grouped cross-validation on the training units.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from tvilling.analytics.evaluation import cmapss as c
from tvilling.analytics.rul import RulModel
from tvilling.analytics.rul.model import RulConfig
from tvilling.core.errors import Invalid

KEYS = ("rmse_raw", "rmse_clipped", "phm08_raw", "phm08_clipped")


def run_cmapss(data_dir: str | Path, subset: str, *, seeds: int = 1) -> dict[str, Any]:
    """The figures the evaluation command prints: averaged over ``seeds`` model seeds."""
    if seeds < 1:
        raise Invalid("seeds must be at least 1", field="seeds", rule="range")
    data = Path(data_dir)
    train = c.load_train(subset, data)
    has_test = (data / f"test_{subset}.txt").is_file() and (data / f"RUL_{subset}.txt").is_file()
    runs: list[dict[str, float]] = []
    seconds = 0.0
    last_pred: Any = None
    truth: Any = None
    for seed in range(seeds):
        def make(seed: int = seed) -> RulModel:
            return RulModel(RulConfig(seed=seed))

        started = time.perf_counter()
        if has_test:
            model = make().learn_many(train, c.train_rul(train, None))
            seconds += time.perf_counter() - started
            test = c.load_test(subset, data)
            truth = c.load_truth(subset, data)
            last_pred = model.predict_last(test)
            runs.append(c.evaluate(last_pred.point, truth))
        else:
            runs.append(c.cross_validate(make, train, k=5, seed=seed))
            seconds += time.perf_counter() - started
    out: dict[str, Any] = {"subset": subset, "mode": "test" if has_test else "cross-validation (5 folds, units)",
                           "seeds": seeds, "train_seconds": round(seconds, 1)}
    for key in KEYS:
        values = [r[key] for r in runs]
        out[key] = round(float(np.mean(values)), 3)
        if seeds > 1:
            out[f"{key}_std"] = round(float(np.std(values)), 3)
    if has_test and last_pred is not None:
        inside = (truth >= last_pred.p10) & (truth <= last_pred.p90)
        out["p10_p90_coverage"] = round(float(np.mean(inside)), 3)
        out["_prediction"] = {"truth": truth.tolist(), "point": last_pred.point.tolist(),
                              "p10": last_pred.p10.tolist(), "p90": last_pred.p90.tolist()}
    return out


def table(result: dict[str, Any]) -> str:
    rows = [("subset", result["subset"]), ("protocol", result["mode"]), ("seeds", result["seeds"]),
            ("RMSE (raw truth)", result["rmse_raw"]), ("RMSE (truth clipped at 125)", result["rmse_clipped"]),
            ("PHM08 (raw)", result["phm08_raw"]), ("PHM08 (clipped)", result["phm08_clipped"]),
            ("training seconds", result["train_seconds"])]
    if "p10_p90_coverage" in result:
        rows.append(("truth inside p10–p90", result["p10_p90_coverage"]))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def plot(result: dict[str, Any], path: str | Path) -> None:
    """Predicted RUL with its p10–p90 band against the truth, per test unit (sorted by truth)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise Invalid("--plot needs matplotlib: pip install matplotlib", field="plot", rule="missing_extra") from None
    pred = result.get("_prediction")
    if pred is None:
        raise Invalid("--plot draws test-set predictions; this subset was scored by cross-validation",
                      field="plot", rule="no_test_set")
    truth, point = np.array(pred["truth"]), np.array(pred["point"])
    lo, hi = np.array(pred["p10"]), np.array(pred["p90"])
    order = np.argsort(truth)
    x = np.arange(len(truth))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.fill_between(x, lo[order], hi[order], alpha=0.25, label="p10–p90")
    ax.plot(x, point[order], ".", label="predicted RUL")
    ax.plot(x, truth[order], "k-", lw=1.2, label="true RUL")
    ax.set_xlabel("test unit (sorted by true RUL)")
    ax.set_ylabel("cycles")
    ax.set_title(f"C-MAPSS {result['subset']}: RMSE {result['rmse_raw']:.2f} raw, "
                 f"{result['rmse_clipped']:.2f} clipped at 125")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
