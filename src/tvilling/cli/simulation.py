"""``tvilling sim …``: behaviour models and simulation; ``sim fmu`` runs an FMU on its own; ``sim run|list|show|
compare`` are what-if scenarios (here, or through a running server with --server)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import click

from tvilling.cli.common import emit, errors, opened_platform, server_option, store_options


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


def _server(url: str) -> Any:
    from tvilling.connect.replay import Server

    return Server(url)


def _show(record: dict[str, Any]) -> None:
    from tvilling.simulation.scenario_text import kpi_table

    request = record.get("request") or {}
    click.echo(f"scenario {record['id']}  twin {record.get('twin')}  {record.get('status')}  "
               f"created {record.get('created')}  horizon {request.get('horizon')}")
    if record.get("status") == "failed":
        click.echo(f"error: {record.get('error')}")
    elif record.get("kpis"):
        click.echo(kpi_table(record["kpis"], str(request.get("horizon", "the horizon"))))


@sim_group.command("run")
@store_options
@server_option
@click.option("--twin", required=True, help="The machine twin to fork.")
@click.option("--option", "options", multiple=True, metavar="NAME[:ITEM,…]",
              help="An option (repeatable): NAME alone is the do-nothing baseline; items are "
                   "WORD[/PART][=VALUE]@AT[+DURATION], e.g. 'slow:setSpeed=900@0m' or "
                   "'replace:replaceBearing/de@4h+1h', or a JSON list of interventions.")
@click.option("--horizon", required=True, help="How far to look ahead: 90s, 15m, 24h, 7d.")
@click.option("--step", default="1m", show_default=True, help="The simulation step.")
@click.option("--samples", type=int, default=100, show_default=True, help="Monte-Carlo samples per option.")
@click.option("--seed", type=int, default=None, help="Make the run reproducible.")
@click.option("--at", default=None, help="Fork the twin as it was at this ISO time (default: now).")
@click.option("--simulation", default=None, help="The simulation to run (default: the one bound to the twin).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON instead of the table.")
def sim_run(data_dir: Path | None, store: str | None, config_file: str | None, server: str | None, twin: str,
            options: tuple[str, ...], horizon: str, step: str, samples: int, seed: int | None, at: str | None,
            simulation: str | None, as_json: bool) -> None:
    """Run a what-if scenario on a fork of TWIN: options side by side, with a progress bar, then the KPIs."""
    from tvilling.simulation.scenario_text import parse_option

    base: dict[str, Any] = {"twin": twin, "horizon": horizon, "step": step, "samples": samples}
    base.update({k: v for k, v in (("seed", seed), ("at", at), ("simulation", simulation)) if v is not None})
    with errors():
        if server is not None:
            api = _server(server)
            query = urlencode({"twin": twin, **({"simulation": simulation} if simulation else {})})
            vocab = api.request("GET", f"/api/scenarios/vocabulary?{query}")[1]
            body = {**base, "options": [parse_option(o, vocab) for o in options]}
            sid = api.request("POST", "/api/scenarios", body)[1]["id"]
            with click.progressbar(length=1000, label=f"scenario {sid}", file=sys.stderr) as bar:
                while (record := api.request("GET", f"/api/scenarios/{sid}")[1])["status"] == "running":
                    bar.update(int(record["progress"] * 1000) - bar.pos)
                    time.sleep(0.2)
                bar.update(1000 - bar.pos)
        else:
            with opened_platform(data_dir, store, config_file) as p:
                from tvilling.simulation.scenario_service import service_for

                svc = service_for(p)
                vocab = svc.vocabulary(twin, simulation)
                prepared = svc.prepare({**base, "options": [parse_option(o, vocab) for o in options]})
                with click.progressbar(length=1000, label=f"scenario {prepared.record['id']}",
                                       file=sys.stderr) as bar:
                    record = svc.execute(prepared, lambda f: bar.update(int(f * 1000) - bar.pos))
    if as_json:
        emit(record)
    else:
        _show(record)
    if record["status"] == "failed":
        sys.exit(1)


@sim_group.command("list")
@store_options
@server_option
@click.option("--limit", type=int, default=100, show_default=True)
def sim_list(data_dir: Path | None, store: str | None, config_file: str | None, server: str | None,
             limit: int) -> None:
    """The what-if scenarios, newest first: id, twin, status, created, options."""
    with errors():
        if server is not None:
            items = _server(server).request("GET", f"/api/scenarios?limit={limit}")[1]["items"]
        else:
            with opened_platform(data_dir, store, config_file) as p:
                from tvilling.simulation.scenario_service import service_for

                items = service_for(p).newest(limit)
    for item in items:
        click.echo(f"{item['id']}  {item['created']}  {item['twin']}  {item['status']}  "
                   f"{' | '.join(item.get('options') or [])}")


@sim_group.command("show")
@store_options
@server_option
@click.argument("scenario_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record (with the series) as JSON.")
def sim_show(data_dir: Path | None, store: str | None, config_file: str | None, server: str | None,
             scenario_id: str, as_json: bool) -> None:
    """One scenario: its status and KPIs per option."""
    with errors():
        if server is not None:
            record = _server(server).request("GET", f"/api/scenarios/{quote(scenario_id)}")[1]
        else:
            with opened_platform(data_dir, store, config_file) as p:
                from tvilling.simulation.scenario_service import service_for

                record = service_for(p).get(scenario_id)
    if as_json:
        emit(record)
    else:
        _show(record)


@sim_group.command("compare")
@store_options
@server_option
@click.argument("ids", metavar="ID…", nargs=-1, required=True)
def sim_compare(data_dir: Path | None, store: str | None, config_file: str | None, server: str | None,
                ids: tuple[str, ...]) -> None:
    """The KPIs of several scenarios side by side (one table; options named ID/option)."""
    from tvilling.simulation.scenario_text import kpi_table

    with errors():
        if server is not None:
            items = _server(server).request("GET", f"/api/scenarios/compare?ids={quote(','.join(ids))}")[1]["items"]
        else:
            with opened_platform(data_dir, store, config_file) as p:
                from tvilling.simulation.scenario_service import service_for

                items = service_for(p).compare(list(ids))
    rows = {f"{item['id']}/{option}": k for item in items for option, k in (item.get("kpis") or {}).items()}
    click.echo(kpi_table(rows))
