"""``tvilling sim …``: behaviour models and simulation; ``sim fmu`` runs an FMU on its own."""

from __future__ import annotations

from pathlib import Path

import click

from tvilling.cli.common import errors


@click.group("sim")
def sim_group() -> None:
    """Run behaviour models: FMUs and the twins' simulation models."""


@sim_group.command("fmu")
@click.argument("fmu_path", metavar="PATH.fmu", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--stop-time", type=float, required=True, help="Simulate until this time (seconds).")
@click.option("--step", type=float, default=None,
              help="Communication step in seconds (default: the FMU's default experiment, else stop-time/500).")
@click.option("--start-values", default=None, metavar="K=V,…",
              help="Start values of parameters, states or inputs, as name=value pairs separated by commas.")
@click.option("--inputs", "inputs_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="CSV with a 'time' column and one column per input (interpolated, held per step).")
@click.option("--interface", type=click.Choice(["co-simulation", "model-exchange"]), default=None,
              help="Which interface to run (default: co-simulation when the FMU offers it).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Write the result here: a 'time' column and one column per output variable.")
def sim_fmu(fmu_path: Path, stop_time: float, step: float | None, start_values: str | None,
            inputs_path: Path | None, interface: str | None, out_path: Path) -> None:
    """Run an FMU (FMI 2.0 or 3.0) from time 0 to --stop-time and write its outputs to a CSV file."""
    with errors():
        from tvilling.simulation.fmu_description import require_fmpy

        require_fmpy()
        from tvilling.simulation.fmu_run import parse_start_values, read_inputs, run_fmu, write_csv

        inputs = read_inputs(inputs_path) if inputs_path is not None else None
        result = run_fmu(fmu_path, stop_time, step, parse_start_values(start_values), inputs, interface)
        write_csv(result, out_path)
    click.echo(f"{len(result.time)} rows, {len(result.outputs)} outputs -> {out_path}")
