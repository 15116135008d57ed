"""``tvilling eval maintenance``: the maintenance policy study on the simulated plant."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tvilling.cli.common import errors


@click.command("maintenance")
@click.option("--machines", type=click.IntRange(1, 10_000), default=20, show_default=True,
              help="Machines in the simulated fleet.")
@click.option("--days", type=click.FloatRange(1, 3_650), default=365.0, show_default=True,
              help="Days simulated per run.")
@click.option("--seeds", type=click.IntRange(1, 1_000), default=5, show_default=True,
              help="Evaluation seeds (1…N); figures are the mean over them, with the spread.")
@click.option("--train-seeds", type=click.IntRange(1, 1_000), default=3, show_default=True,
              help="Training seeds (1001…) on which the fixed interval is chosen by grid search.")
@click.option("--solver", type=click.Choice(["highs", "cpsat", "greedy"]), default="highs", show_default=True,
              help="The maintenance optimiser's solver for the predictive policy.")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line: {\"policies\": {...}}.")
@click.option("--chart", "chart", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Draw cost and failures per policy and one seed's maintenance timeline into this PNG "
                   "(needs the plot extra: matplotlib).")
def eval_maintenance(machines: int, days: float, seeds: int, train_seeds: int, solver: str, as_json: bool,
                     chart: Path | None) -> None:
    """Run-to-failure, the best fixed interval and the twin's predictive plan on a simulated fleet.

    Reports per policy the total cost, unplanned failures, downtime (production hours lost),
    throughput (parts) and preventive actions; progress goes to stderr.
    """
    from tvilling.planning import study

    with errors():
        if chart is not None:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                raise click.UsageError("--chart needs matplotlib: pip install 'tvilling[plot]'") from None
        cfg = study.StudyConfig(machines=machines, days=days, seeds=seeds, train_seeds=train_seeds, solver=solver)
        result = study.run_study(cfg)
        click.echo(study.table(result))
        if chart is not None:
            from tvilling.planning.study_chart import plot

            plot(result, chart)
            click.echo(f"chart: {chart}", err=True)
        if as_json:
            click.echo(json.dumps(study.public(result)))
