"""``tvilling analytics …``: configured analytics, their versions, training and backtests over stored history
(here or through a running server), promotion, forecasts, and fault-family classifier files."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from tvilling.cli.common import F, emit, errors, one_writer, opened_platform, server_option, store_options
from tvilling.core.errors import Invalid


@click.group("analytics")
def analytics_group() -> None:
    """Configured analytics: versions, training from stored history, backtests, promotion, forecasts."""


def _choose(twins: tuple[str, ...], prefix: str | None, exclude: tuple[str, ...],
            pages: Callable[[], Iterable[list[str]]]) -> list[str]:
    """The twins named by --twin/--prefix/--exclude; none is a usage error."""
    from tvilling.analytics.binding.choose import choose_twins

    try:
        return choose_twins(twins, prefix, exclude, pages)
    except Invalid as exc:
        raise click.UsageError(exc.message) from None


def _us(text: str | None, default: int) -> int:
    """``--from``/``--to``: ISO 8601 with a zone or epoch milliseconds, as the HTTP API reads them."""
    from tvilling.api.history import _time

    return _time(text, "time", default)


_twin_opts = [click.option("--twin", "twins", multiple=True, help="A twin (repeatable)."),
              click.option("--prefix", default=None, help="Every twin of the analytic's model whose id starts so."),
              click.option("--from", "start", default=None, help="Start of the history range (ISO 8601 or epoch ms)."),
              click.option("--to", "end", default=None, help="End of the history range.")]


def twin_options(fn: F) -> F:
    """--twin / --prefix / --from / --to: the twins and the history range a run covers."""
    for opt in reversed(_twin_opts):
        fn = opt(fn)
    return fn


@analytics_group.command("list")
@store_options
@server_option
def analytics_list(data_dir: Path | None, store: str | None, config_file: str | None, server: str | None) -> None:
    """Configured analytics with their versions (one JSON object a line)."""
    from tvilling.api.analytics import describe

    if server is not None:
        from tvilling.connect.replay import Server

        with errors():
            for item in Server(server).request("GET", "/api/analytics")[1]["items"]:
                emit(item)
        return
    with opened_platform(data_dir, store, config_file) as p:
        for spec in p.analytics.specs:
            emit(describe(p.analytics, spec))


@analytics_group.command("train")
@store_options
@click.argument("name")
@twin_options
@click.option("--exclude", multiple=True, metavar="PREFIX",
              help="Leave out the twins whose id starts so (repeatable): held out for an out-of-sample backtest.")
@click.option("--promote", is_flag=True, help="Promote the new version at once (retrain).")
@server_option
def analytics_train(data_dir: Path | None, store: str | None, config_file: str | None, name: str,
                    twins: tuple[str, ...], prefix: str | None, start: str | None, end: str | None,
                    exclude: tuple[str, ...], promote: bool, server: str | None) -> None:
    """Train a new version of NAME from the history stored in the platform."""
    from tvilling.analytics.binding.choose import find_spec, model_twin_pages
    from tvilling.analytics.binding.lifecycle import END, train

    if server is not None:
        _analytics_through(server, name, twins, prefix, exclude, "train",
                           {"from": start, "to": end, "promote": promote})
        return
    with opened_platform(data_dir, store, config_file) as p, one_writer():
        spec = find_spec(p.analytics, name)
        chosen = _choose(twins, prefix, exclude, lambda: model_twin_pages(p.twins, spec.model))
        with click.progressbar(length=len(chosen), label=f"reading history of {len(chosen)} twin(s)",
                               file=sys.stderr) as bar:
            def progress(done: int, total: int) -> None:
                bar.update(done - bar.pos)

            version = train(spec, p.analytics_registry, p.history, chosen, start_us=_us(start, 0),
                            end_us=_us(end, END), promote=promote, progress=progress)
        emit(version.to_json())


@analytics_group.command("backtest")
@store_options
@click.argument("name")
@click.argument("version", type=int)
@twin_options
@click.option("--scope", default=None, help="The version's scope: a twin id, or * for a fleet model.")
@click.option("--in-sample", is_flag=True,
              help="Keep the twins a fleet version was trained on (left out by default: out of sample).")
@server_option
def analytics_backtest(data_dir: Path | None, store: str | None, config_file: str | None, name: str, version: int,
                       twins: tuple[str, ...], prefix: str | None, start: str | None, end: str | None,
                       scope: str | None, in_sample: bool, server: str | None) -> None:
    """Replay VERSION of NAME over stored history and print the report (kept with the version).

    A fleet version is scored on twins it did not learn from: those it was trained on are
    left out (the report's ``left_out``) unless --in-sample is given."""
    from tvilling.analytics.binding.choose import find_spec, model_twin_pages
    from tvilling.analytics.binding.lifecycle import END
    from tvilling.analytics.binding.remote import figures_first
    from tvilling.analytics.binding.spec import FLEET
    from tvilling.api.analytics import held_out_backtest

    if server is not None:
        _analytics_through(server, name, twins, prefix, (), f"versions/{version}/backtest",
                           {"from": start, "to": end, "scope": scope, "in_sample": in_sample})
        return
    with opened_platform(data_dir, store, config_file) as p, one_writer():
        spec = find_spec(p.analytics, name)
        chosen = _choose(twins, prefix, (), lambda: model_twin_pages(p.twins, spec.model))
        scope = scope or (chosen[0] if spec.per_twin else FLEET)
        v = p.analytics_registry.get(name, scope, version)
        report = held_out_backtest(spec, p.analytics_registry, p.history, v, chosen, _us(start, 0),
                                   _us(end, END), in_sample)
        emit(figures_first(report))


def _analytics_through(server: str, name: str, twins: tuple[str, ...], prefix: str | None,
                       exclude: tuple[str, ...], action: str, body: dict[str, Any]) -> None:
    """``analytics train|backtest --server URL``: the twins chosen through the server's query API, then its
    ``POST /api/analytics/{name}/{action}``; prints the answer as the local command does."""
    from tvilling.analytics.binding.remote import remote_model, remote_model_pages, remote_run
    from tvilling.connect.replay import Server

    with errors():
        api = Server(server)
        model = remote_model(api, name)
        chosen = _choose(twins, prefix, exclude, lambda: remote_model_pages(api, model))
        click.echo(f"{action.rsplit('/', 1)[-1]} {name} on {len(chosen)} twin(s) through {api.url}", err=True)
        answer = remote_run(api, name, action, chosen, body)
    emit(answer)


@analytics_group.command("promote")
@store_options
@click.argument("name")
@click.argument("version", type=int)
@click.option("--scope", default=None, help="The twin, for per-twin analytics (fleet models: *).")
def analytics_promote(data_dir: Path | None, store: str | None, config_file: str | None, name: str, version: int,
                      scope: str | None) -> None:
    """Make VERSION the one that runs (a running server picks it up within its upkeep interval)."""
    from tvilling.analytics.binding.choose import find_spec

    with opened_platform(data_dir, store, config_file) as p:
        spec = find_spec(p.analytics, name)
        if scope is None:
            if spec.per_twin:
                raise click.UsageError(f"analytic {name!r} is fitted per twin: name the twin with --scope TWIN")
            scope = "*"
        emit(p.analytics_registry.promote(name, scope, version).to_json())


@analytics_group.command("forecast")
@store_options
@click.argument("twin_id")
@click.argument("prop", metavar="PROPERTY")
@click.option("--horizon", type=int, default=10, show_default=True, help="Steps ahead.")
@click.option("--points", type=int, default=500, show_default=True, help="Newest readings used.")
def analytics_forecast(data_dir: Path | None, store: str | None, config_file: str | None, twin_id: str, prop: str,
                       horizon: int, points: int) -> None:
    """Forecast PROPERTY of TWIN_ID with an 80 % interval, from its newest readings."""
    from tvilling.analytics.binding.forecasts import forecast_series

    with opened_platform(data_dir, store, config_file) as p:
        p.twins.get(twin_id)
        emit(forecast_series(p.history, twin_id, prop, horizon=horizon, points=points))


@analytics_group.command("family-train")
@click.option("--skab", "skab_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Labelled SKAB-layout files (recursively); each file's folder names its fault family.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--horizon", type=click.IntRange(1, 600), default=15, show_default=True,
              help="Rows from an alarm's start that name its family.")
def analytics_family_train(skab_dir: Path, out_path: Path, horizon: int) -> None:
    """Train a fault-family classifier for a mewma analytic (params.family_classifier = OUT)."""
    from tvilling.analytics.diagnostics.family_file import write_family_classifier

    with errors():
        emit(write_family_classifier(skab_dir, out_path, horizon=horizon))
