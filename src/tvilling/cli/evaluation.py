"""``tvilling eval …``: score the analytics on public benchmarks (SKAB, NAB, C-MAPSS) with their protocols."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tvilling.cli.common import errors


@click.group("eval")
def eval_group() -> None:
    """Score the analytics on public benchmarks with their published protocols."""


def _report(result: dict[str, Any], as_json: bool, table: Callable[[dict[str, Any]], str]) -> None:
    """Print a result as one JSON object (its public keys) or as the run's table."""
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    click.echo(json.dumps(public) if as_json else table(result))


def _public(result: dict[str, Any]) -> dict[str, Any]:
    """A result without the per-row series kept for plotting."""
    return {k: v for k, v in result.items() if k not in ("series",)}


@eval_group.command("skab")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder searched recursively for labelled SKAB CSV files.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Draw anomaly scores against the labels into this PNG.")
def eval_skab(data_dir: Path, as_json: bool, plot_path: Path | None) -> None:
    """Multivariate anomaly detection on SKAB: first 400 rows of each file train, the rest test."""
    from tvilling.analytics.evaluation import runs

    with errors():
        result = runs.run_skab(data_dir, keep_series=plot_path is not None)
        if plot_path is not None:
            runs.plot(result, plot_path)
    _report(_public(result), as_json, runs.table)


@eval_group.command("nab")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="NAB's data folder (one sub-folder per category).")
@click.option("--labels", "labels", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="NAB's combined_windows.json.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Draw scores against the anomaly windows into this PNG.")
def eval_nab(data_dir: Path, labels: Path, as_json: bool, plot_path: Path | None) -> None:
    """Univariate anomaly detection scored with NAB v1.1 (standard, low FP, low FN profiles)."""
    from tvilling.analytics.evaluation import runs

    with errors():
        result = runs.run_nab(data_dir, labels)
        if plot_path is not None:
            runs.plot(result, plot_path)
    _report(_public(result), as_json, runs.table)


@eval_group.command("cmapss")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder with NASA's train_FD00x.txt, test_FD00x.txt and RUL_FD00x.txt.")
@click.option("--subset", required=True, type=click.Choice(["FD001", "FD002", "FD003", "FD004"]))
@click.option("--seeds", type=int, default=1, show_default=True, help="Train this many seeds; report the mean.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Draw predicted vs true RUL per test unit into this PNG.")
def eval_cmapss(data_dir: Path, subset: str, seeds: int, as_json: bool, plot_path: Path | None) -> None:
    """Remaining useful life on C-MAPSS: one prediction per test unit at its last cycle."""
    from tvilling.analytics.evaluation import cmapss_run

    with errors():
        result = cmapss_run.run_cmapss(data_dir, subset, seeds=seeds)
        if plot_path is not None:
            cmapss_run.plot(result, plot_path)
    _report(result, as_json, cmapss_run.table)

