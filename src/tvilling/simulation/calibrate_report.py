"""How well a calibrated model follows the data: metrics per output and a measured-vs-simulated plot.

Per output, over the samples where both the measurement and the simulation have a value:

* **nRMSE** = RMSE / (max − min of the *measured* series in that window): the typical error as a
  share of the range the output covered (``None`` when the measured range is zero);
* **R²** = 1 − Σ(measured − simulated)² / Σ(measured − mean measured)²: the share of the measured
  variance the model explains (``None`` when the measured series is constant);
* **RMSE**, **bias** (mean of simulated − measured) and the number of samples compared.

>>> import numpy as np
>>> m = output_metrics(np.array([0.0, 1.0, 2.0, np.nan]), np.array([0.1, 1.1, 2.1, 5.0]))
>>> round(m["nrmse"], 3), round(m["r2"], 3), m["n"]
(0.05, 0.985, 3)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tvilling.core.errors import Unavailable
from tvilling.simulation.ports import Array

if TYPE_CHECKING:
    from tvilling.simulation.calibrate import Calibration


def output_metrics(measured: Array, simulated: Array) -> dict[str, Any]:
    """nRMSE (by the measured range), R², RMSE, bias and the sample count of one output in one window."""
    ok = np.isfinite(measured) & np.isfinite(simulated)
    y, s = measured[ok], simulated[ok]
    n = int(ok.sum())
    if n == 0:
        return {"n": 0, "rmse": None, "nrmse": None, "r2": None, "bias": None, "range": None}
    err = s - y
    rmse = float(np.sqrt(np.mean(err * err)))
    spread = float(y.max() - y.min())
    total = float(np.sum((y - y.mean()) ** 2))
    return {"n": n, "rmse": rmse, "nrmse": rmse / spread if spread > 0 else None,
            "r2": 1.0 - float(np.sum(err * err)) / total if total > 0 else None,
            "bias": float(err.mean()), "range": spread}


def plot_calibration(calibration: Calibration, path: str | Path, *, outputs: list[str] | None = None) -> Path:
    """Save a figure of measured (dots) vs simulated (line) per output, the fit window and the held-out
    window shaded; returns the path. Needs matplotlib (``pip install 'tvilling[plot]'``)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise Unavailable("the calibration plot needs matplotlib: pip install 'tvilling[plot]'",
                          dependency="matplotlib") from None
    names = outputs or list(calibration.measured)
    missing = [name for name in names if name not in calibration.measured]
    if missing:
        from tvilling.core.errors import Invalid

        raise Invalid(f"no measured output {missing[0]!r} in this calibration; there are "
                      f"{sorted(calibration.measured)}", field="outputs", rule="unknown")
    rows = max(1, len(names))
    fig, axes = plt.subplots(rows, 1, figsize=(9, 2.2 * rows + 0.6), sharex=True, squeeze=False)
    t = calibration.t
    for ax, name in zip(axes[:, 0], names, strict=True):
        ax.axvspan(*calibration.window, color="#dbe9f6", label="fit window")
        if calibration.holdout is not None:
            ax.axvspan(*calibration.holdout, color="#fde7d3", label="held-out window")
        ax.plot(t, calibration.measured[name], ".", ms=2.5, color="#555555", label="measured")
        ax.plot(t, calibration.simulated[name], "-", lw=1.4, color="#c0392b", label="simulated")
        metrics = (calibration.validation or calibration.fit).get(name, {})
        nrmse = metrics.get("nrmse")
        label = name if nrmse is None or not math.isfinite(nrmse) else f"{name}  (nRMSE {100 * nrmse:.1f} %)"
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("t (s)")
    fig.suptitle(f"{calibration.model}: measured vs simulated", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


__all__ = ["output_metrics", "plot_calibration"]
