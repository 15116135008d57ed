"""The evaluation figures beside the published records, as one JSON line and a chart.

    python bench/eval_records.py [--data ../shared/datasets] [--plot docs/eval-vs-records.png]

Runs ``tvilling eval skab``, ``eval nab`` and ``eval cmapss --subset FD001`` in process (the
same library functions and defaults as the commands), prints their headline figures as one
JSON line, and draws each beside the records quoted in the data sets' READMEs. Our figures
are on the development parts (SKAB/NAB) or the official FD001 test set; the records are on
the full benchmarks, so the comparison is indicative, as the READMEs explain.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from tvilling.analytics.evaluation.cmapss_run import run_cmapss
from tvilling.analytics.evaluation.runs import run_nab, run_skab

# records quoted in ../shared/datasets/*/README.md (name: value)
SKAB_F1 = {"Conv-AE": 0.78, "MSET": 0.78, "T²+Q (PCA)": 0.76, "LSTM-AE": 0.74, "T²": 0.66}
SKAB_CP = {"MSCRED": 32.42, "Isolation forest": 26.16, "T²+Q (PCA)": 25.35, "Conv-AE": 23.61}
CMAPSS_FD001 = {"MTSTAN": 10.97, "MS-DCNN": 11.44, "FFVE": 12.31, "AGCNN": 12.42, "RVE": 13.42,
                "Deep LSTM": 16.14}
NAB_SHOWN = ("ARTime", "numenta", "contextOSE", "earthgeckoSkyline", "relativeEntropy", "bayesChangePt")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("TVILLING_DATASETS", "../shared/datasets"))
    ap.add_argument("--plot", default=None, help="Write the comparison chart (PNG) here.")
    args = ap.parse_args()
    data = Path(args.data)
    out: dict[str, object] = {}
    t0 = time.perf_counter()
    skab = run_skab(data / "skab")
    out["skab"] = {k: skab[k] for k in ("f1", "far", "mar", "nab_standard", "nab_low_fp", "nab_low_fn", "files")}
    nab = run_nab(data / "nab" / "data", data / "nab" / "labels" / "combined_windows.json")
    out["nab"] = {k: nab[k] for k in ("standard", "reward_low_fp", "reward_low_fn", "files")}
    cm = run_cmapss(data / "cmapss", "FD001")
    out["cmapss_fd001"] = {k: cm[k] for k in ("rmse_clipped", "rmse_raw", "phm08_clipped", "train_seconds")}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    published = json.loads((data / "nab" / "published_final_results.json").read_text())
    if args.plot:
        draw(out, published, Path(args.plot))
        out["plot"] = args.plot
    print(json.dumps(out))
    return 0


def draw(out: dict, published: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nab_records = {("HTM" if k == "numenta" else k): round(v["standard"], 1) for k, v in published.items()
                   if k in NAB_SHOWN}
    panels = [
        ("SKAB outlier F1 (higher is better)", out["skab"]["f1"], SKAB_F1, "{:.2f}"),  # type: ignore[index]
        ("SKAB changepoint NAB standard", out["skab"]["nab_standard"], SKAB_CP, "{:.1f}"),  # type: ignore[index]
        ("NAB v1.1 standard profile", out["nab"]["standard"], nab_records, "{:.1f}"),  # type: ignore[index]
        ("C-MAPSS FD001 RMSE (lower is better)", out["cmapss_fd001"]["rmse_clipped"], CMAPSS_FD001,  # type: ignore[index]
         "{:.2f}"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    for ax, (title, ours, records, fmt) in zip(axes, panels, strict=True):
        items = sorted({**records, "Tvilling": ours}.items(), key=lambda kv: kv[1],
                       reverse="RMSE" not in title)
        names = [k for k, _ in items]
        values = [v for _, v in items]
        colours = ["#d9480f" if n == "Tvilling" else "#868e96" for n in names]
        bars = ax.barh(names[::-1], values[::-1], color=colours[::-1])
        for bar, v in zip(bars, values[::-1], strict=True):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + fmt.format(v), va="center",
                    fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_xlim(0, max(values) * 1.2)
    fig.suptitle("Tvilling (orange; development parts / FD001 test set) beside published records (full benchmarks)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
