"""The maintenance study's chart: cost and failures per policy, and one seed's maintenance timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tvilling.core.errors import Unavailable
from tvilling.planning.study import POLICIES, StudyConfig

COLOURS = {"run_to_failure": "#c0392b", "fixed_interval": "#7f8c8d", "predictive": "#2471a3"}


def plot(result: dict[str, Any], path: Path) -> Path:
    """Draw the study into ``path`` (PNG); :class:`Unavailable` when matplotlib (the ``plot`` extra) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise Unavailable("the chart needs matplotlib: pip install 'tvilling[plot]'", extra="plot") from None
    cfg: StudyConfig = result["_config"]
    policies = result["policies"]
    labels = [name.replace("_", " ") if name != "fixed_interval"
              else f"fixed {policies[name]['interval_h']:g} h" for name in POLICIES]
    colours = [COLOURS[name] for name in POLICIES]
    fig = plt.figure(figsize=(13, 9), constrained_layout=True)
    grid = fig.add_gridspec(3, 2, height_ratios=[1.0, 1.0, 1.0])
    for col, (key, title) in enumerate((("cost", "total cost per year of the fleet"),
                                        ("failures", "unplanned failures"))):
        ax = fig.add_subplot(grid[0, col])
        means = [policies[n][key] for n in POLICIES]
        sds = [policies[n][f"{key}_sd"] for n in POLICIES]
        ax.bar(labels, means, yerr=sds, color=colours, capsize=4)
        ax.set_title(f"{title} (mean ± sd over {cfg.seeds} seed(s))")
        if key == "cost":
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    events = result.get("_events", {})
    for k, name in enumerate(POLICIES):
        ax = fig.add_subplot(grid[1 + k // 2, k % 2])
        for e in events.get(name, []):
            start, end = e.start_h / 24.0, min(e.end_h, cfg.days * 24.0) / 24.0
            if e.kind == "failure":
                ax.plot([start], [e.machine], marker="x", color="#c0392b", markersize=7)
                ax.hlines(e.machine, start, end, color="#c0392b", linewidth=4)
            else:
                ax.hlines(e.machine, start, max(end, start + 0.6), color="#2471a3", linewidth=4)
        ax.set_xlim(0, cfg.days)
        ax.set_ylim(-1, cfg.machines)
        ax.set_xlabel("day")
        ax.set_ylabel("machine")
        ax.set_title(f"{labels[k]}, seed 1: failures × and repairs (red), preventive work (blue)", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["plot"]
