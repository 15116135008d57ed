"""``tvilling eval jobshop``: the production scheduler on published job-shop and flexible job-shop instances."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import click

from tvilling.cli.common import errors


@click.command("jobshop")
@click.option("--instances", "instances", required=True, type=click.Path(exists=True, path_type=Path),
              help="A folder of instance files (*.txt), or one file.")
@click.option("--time-limit", "time_limit", required=True, type=float, help="Seconds per instance.")
@click.option("--best-known", "best_known", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="best_known.json (default: the one beside the instances).")
@click.option("--schedules", "schedules", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write each schedule to DIR/NAME.json.")
@click.option("--flexible", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
              help="Instance format: Brandimarte's flexible job shop (yes), the standard job shop (no), "
                   "or detected per file.")
@click.option("--names", default=None, metavar="a,b,...", help="Only these instances (file names without .txt).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="CP-SAT threads per instance (1 = one core).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the searches.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object on the last line.")
def eval_jobshop(instances: Path, time_limit: float, best_known: Path | None, schedules: Path | None,
                 flexible: str, names: str | None, workers: int, seed: int, as_json: bool) -> None:
    """Makespan, best-known value, gap and proven optimality per instance, and the mean gap."""
    from tvilling.planning import jobshop_eval

    if time_limit <= 0:
        raise click.BadParameter(f"must be positive, got {time_limit}", param_hint="--time-limit")
    picked = [n.strip() for n in names.split(",") if n.strip()] if names else None
    with errors():
        files = jobshop_eval.list_instances(instances, picked)
        result = jobshop_eval.run(
            files, time_limit, best_known=best_known, schedules=schedules,
            flexible=cast("jobshop_eval.Flexible", flexible), workers=workers, seed=seed,
            progress=lambda n, total, row: click.echo(jobshop_eval.progress_line(n, total, row), err=True))
    click.echo(json.dumps(jobshop_eval.public(result)) if as_json else jobshop_eval.table(result))
