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


@sim_group.command("score")
@store_options
@server_option
@click.argument("scenario_id", metavar="ID")
@click.option("--option", default=None, help="The option to score (default: the baseline, do nothing).")
@click.option("--json", "as_json", is_flag=True, help="Print the score as JSON.")
def sim_score(data_dir: Path | None, store: str | None, config_file: str | None, server: str | None,
              scenario_id: str, option: str | None, as_json: bool) -> None:
    """Once its horizon has passed: a scenario's p10-p90 bands and p50 against what the twin measured."""
    with errors():
        if server is not None:
            query = f"?option={quote(option)}" if option is not None else ""
            score = _server(server).request("GET", f"/api/scenarios/{quote(scenario_id)}/score{query}")[1]
        else:
            with opened_platform(data_dir, store, config_file) as p:
                from tvilling.simulation.scenario_service import service_for

                score = service_for(p).score(scenario_id, modelset=lambda: p.models.modelset, option=option)
    if as_json:
        emit(score)
        return
    click.echo(f"{score['id']} ({score['twin']}), option {score['option']!r}, {score['from']} - {score['to']}")
    click.echo(f"{'output':<28} {'points':>6} {'in p10-p90':>10} {'p50 MAE':>10} {'p50 RMSE':>10}")
    for name, row in score["outputs"].items():
        if not row["points"]:
            click.echo(f"{name:<28} {0:>6}  {row.get('why', 'no reading in the span')}")
            continue
        click.echo(f"{name:<28} {row['points']:>6} {row['coverage']:>10.0%} {row['mae']:>10.4g} {row['rmse']:>10.4g}")


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


def _percent(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _show_calibration(doc: dict[str, Any]) -> None:
    """Each fitted unknown as value ± standard error, then nRMSE and R² per output on the held-out window."""
    click.echo(f"calibrated {doc['simulation']} on {doc['twin']}: version {doc['version']} ({doc['status']})")
    click.echo(f"fit {doc['window']['from']} – {doc['window']['to']}, validated up to {doc['validation_window']['to']}"
               f" ({doc['samples']} samples of {doc['step_s']:g} s; {doc['evaluations']} evaluations, "
               f"{doc['seconds']:.1f} s{'' if doc['converged'] else ', NOT converged: ' + doc['status_message']})")
    width = max([len(e["name"]) for e in doc["estimates"]] + [len(o) for o in doc["outputs"]] + [9])
    click.echo(f"{'parameter':<{width}}  value ± standard error")
    for e in doc["estimates"]:
        se = "undetermined" if e["stderr"] is None else f"{e['stderr']:.4g}"
        note = "  (at its bound)" if e["at_bound"] else ""
        kind = "" if e["kind"] == "parameter" else "  (start value)"
        click.echo(f"{e['name']:<{width}}  {e['estimate']:.6g} ± {se}{' ' + e['unit'] if e['unit'] else ''}"
                   f"{kind}{note}")
    click.echo(f"{'output':<{width}}  {'nRMSE':>8}  {'R²':>6}   (validation window)")
    for name in doc["outputs"]:
        m = doc["validation"].get(name) or {}
        r2 = "—" if m.get("r2") is None else f"{m['r2']:.3f}"
        click.echo(f"{name:<{width}}  {_percent(m.get('nrmse')):>8}  {r2:>6}")
    if doc.get("outputs_without_data"):
        click.echo(f"no readings (left out): {', '.join(doc['outputs_without_data'])}")
    plot = doc.get("plot")
    if plot:
        click.echo(f"plot: {plot['path']}" if plot["path"] else f"plot not written: {plot['error']}")


@sim_group.command("calibrate")
@store_options
@server_option
@click.argument("name")
@click.option("--twin", required=True, help="The twin whose stored history is fitted.")
@click.option("--from", "start", required=True,
              help="Start of the fit window: ISO time with a zone, epoch ms, or relative to now (-2h).")
@click.option("--to", "end", required=True, help="End of the fit window (as --from).")
@click.option("--validate-to", default=None,
              help="End of the validation window after --to (default: as long as the fit window).")
@click.option("--parameters", default=None, metavar="A,B,…",
              help="Parameters to fit (default: the model's calibratable ones, else every parameter with bounds).")
@click.option("--start-states", default=None, metavar="S,…",
              help="States whose start value is fitted too (e.g. de:wear, motor.temperature).")
@click.option("--start-values", default=None, metavar="K=V,…", help="Start values of states.")
@click.option("--outputs", default=None, metavar="O,…", help="The bound outputs compared (default: all).")
@click.option("--step", type=float, default=None, help="Seconds between samples (default: the readings' spacing).")
@click.option("--promote", is_flag=True, help="Make the new version the one that runs.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save measured vs simulated per output here (PNG; needs the plot extra).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
def sim_calibrate(data_dir: Path | None, store: str | None, config_file: str | None, server: str | None, name: str,
                  twin: str, start: str, end: str, validate_to: str | None, parameters: str | None,
                  start_states: str | None, start_values: str | None, outputs: str | None, step: float | None,
                  promote: bool, plot_path: Path | None, as_json: bool) -> None:
    """Fit NAME's parameters to TWIN's stored history, validate on the window after, register a new version."""
    from contextlib import ExitStack

    from tvilling.cli.common import one_writer
    from tvilling.simulation.fmu_run import parse_start_values

    body: dict[str, Any] = {"twin": twin, "from": start, "to": end, "promote": promote}
    for key, value in (("validate_to", validate_to), ("parameters", parameters), ("start_states", start_states),
                       ("outputs", outputs), ("step", step)):
        if value is not None:
            body[key] = value
    with errors():
        if start_values is not None:
            body["start_values"] = parse_start_values(start_values)
        if server is not None:
            if plot_path is not None:
                raise click.UsageError("--plot draws here from the data directory; with --server, draw the "
                                       "'series' of the --json answer")
            click.echo(f"calibrating {name} on {twin} through {server} …", err=True)
            doc = _server(server).request("POST", f"/api/simulations/{quote(name)}/calibrations", body)[1]
            doc.pop("series", None)
        else:
            from tvilling.simulation.calibrate_service import parse_request, service_for

            with opened_platform(data_dir, store, config_file) as p, one_writer(), ExitStack() as bars:
                request = parse_request(body)
                shown: list[Any] = [None, None]  # the stage shown and its bar

                def progress(stage: str, done: int, total: int) -> None:
                    if stage != shown[0]:
                        if shown[1] is not None:
                            shown[1].update(shown[1].length - shown[1].pos)
                            bars.close()
                        label = "reading history" if stage == "reading" else "fitting (evaluations)"
                        shown[0] = stage
                        shown[1] = None if stage == "done" else bars.enter_context(
                            click.progressbar(length=total, label=label, file=sys.stderr))
                    if shown[1] is not None:
                        shown[1].update(done - shown[1].pos)

                doc = service_for(p).calibrate(name, request, progress=progress, plot=plot_path)
    if as_json:
        emit(doc)
    else:
        _show_calibration(doc)
