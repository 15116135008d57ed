"""``tvilling replay`` and ``tvilling dead-letters``: data into the ingest pipeline, and what it rejected."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from tvilling.cli.common import errors, one_writer, opened_platform, server_option, store_options


@click.command("replay")
@store_options
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--speed", default="max", show_default=True,
              help="N replays N× faster than the data's own clock; 'max' as fast as ingest takes it.")
@click.option("--format", "fmt", type=click.Choice(["auto", "skab", "nab", "cmapss"]), default="auto",
              show_default=True)
@click.option("--create/--no-create", default=True, show_default=True,
              help="Register the data-set models and create missing twins (one per file or engine unit).")
@server_option
def replay(data_dir: Path | None, store: str | None, config_file: str | None, path: Path, speed: str, fmt: str,
           create: bool, server: str | None) -> None:
    """Replay SKAB, NAB or C-MAPSS files (a file or a folder) through the ingest pipeline: this process's
    (opening the data directory), or a running server's with --server."""
    from tvilling.connect import replay as rp
    from tvilling.ingest.datasets import ensure_series_twins

    pace = _pace(speed)
    if server is not None:
        _replay_through(server, path, fmt, create, pace, speed)
        return
    with opened_platform(data_dir, store, config_file) as p, one_writer():
        series = rp.load(path, fmt)
        if create:
            ensure_series_twins(p.models, p.twins, series)
        total = sum(len(s) for s in series)
        click.echo(f"replaying {len(series)} series, {total} readings, speed {speed}", err=True)
        started = time.monotonic()
        with click.progressbar(length=total, label="replay", file=sys.stderr) as bar:
            answer = rp.replay(p.pipeline, series, speed=pace, progress=bar.update)
        took = time.monotonic() - started
    _replay_answer(answer, took)


def _pace(speed: str) -> float | None:
    """``--speed``: ``None`` for 'max', else a positive factor."""
    try:
        pace = None if speed == "max" else float(speed)
    except ValueError:
        raise click.BadParameter("use a number or 'max'", param_hint="--speed") from None
    if pace is not None and pace <= 0:
        raise click.BadParameter("must be positive", param_hint="--speed")
    return pace


def _replay_through(server: str, path: Path, fmt: str, create: bool, pace: float | None, speed: str) -> None:
    """``tvilling replay --server URL``: the same readings, posted to the server's ``POST /api/ingest``."""
    from tvilling.connect import replay as rp
    from tvilling.models.builtin import builtin_documents

    with errors():
        api = rp.Server(server)
        series = rp.load(path, fmt)
        if create:
            rp.ensure_twins(api, series, builtin_documents("datasets"))
        total = sum(len(s) for s in series)
        click.echo(f"replaying {len(series)} series, {total} readings, speed {speed}, through {api.url}", err=True)
        started = time.monotonic()
        with click.progressbar(length=total, label="replay", file=sys.stderr) as bar:
            answer = rp.replay_to(api, series, speed=pace, progress=bar.update)
        api.close()
    _replay_answer(answer, time.monotonic() - started)


def _replay_answer(a: Any, took: float) -> None:
    """A replay's :class:`~tvilling.connect.replay.Answer`, as the README shows it."""
    click.echo(f"accepted {a.accepted}, rejected {a.rejected}, duplicates {a.duplicates}, flagged {a.flagged} in "
               f"{took:.1f} s ({a.accepted / max(took, 1e-9):,.0f} readings/s)")
    for entry in a.rejections:
        click.echo(f"  {entry['count']} rejected by rule {entry['rule']}: {'; '.join(entry['reasons'])}")
    if a.rejected:
        click.echo("  (every one of them, with its payload: `tvilling dead-letters` or GET /api/dead-letters)")


@click.command("dead-letters")
@store_options
@click.option("--twin", default=None, help="Only this twin's.")
@click.option("--rule", default=None, help="Only those rejected by this rule (e.g. unknown_property).")
@click.option("--after", type=int, default=0, help="Only ids after this one.")
@click.option("--limit", type=int, default=50, show_default=True)
def dead_letters(data_dir: Path | None, store: str | None, config_file: str | None, twin: str | None,
                 rule: str | None, after: int, limit: int) -> None:
    """List rejected input with the reason and the raw payload."""
    with opened_platform(data_dir, store, config_file) as p:
        items = p.dead_letters.list(after=after, limit=limit, twin=twin, rule=rule)
        for d in items:
            doc = d.to_json()
            click.echo(f"#{doc['id']} {doc['received']} {doc['transport']} {doc['twin'] or '-'}"
                       f"{'.' + doc['property'] if doc['property'] else ''} [{doc['rule']}] {doc['reason']}")
            click.echo(f"    {doc['payload'][:300]}")
        if not items:
            click.echo("no dead letters", err=True)
