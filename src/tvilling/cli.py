"""The ``tvilling`` command: thin entry points over the library."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tvilling import __version__
from tvilling.config import CONFIG_ENV, Settings, load_settings
from tvilling.core.errors import TvillingError

if TYPE_CHECKING:
    from tvilling.app import Platform

F = TypeVar("F", bound=Callable[..., Any])


def store_options(fn: F) -> F:
    """--data-dir / --store / --config, shared by every command that opens the store."""
    fn = click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
                      help=f"TOML config file (default ./tvilling.toml; env {CONFIG_ENV}).")(fn)
    fn = click.option("--store", default=None, metavar="URL",
                      help="'memory', or postgresql://… for server mode (default: embedded store).")(fn)
    fn = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                      help="Directory of the embedded store (default ./tvilling-data).")(fn)
    return fn


def server_option(fn: F) -> F:
    """--server URL (env TVILLING_URL): work through a running ``tvilling serve`` instead of the data directory."""
    return click.option(
        "--server", default=None, metavar="URL", envvar="TVILLING_URL",
        help="Go through a running `tvilling serve` at this address (http://HOST:PORT; env TVILLING_URL) "
             "instead of opening the data directory, which that server holds (the embedded history admits "
             "one writing process).")(fn)


def _settings(config_file: str | None, **overrides: Any) -> Settings:
    from pydantic import ValidationError

    try:
        return load_settings(config_file or None, **overrides)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise click.UsageError("bad settings (config file, TVILLING_* variables or flags):\n"
                               + "\n".join(lines)) from None
    except (ValueError, FileNotFoundError) as exc:
        raise click.UsageError(str(exc)) from exc


@contextmanager
def _platform(data_dir: Path | None, store: str | None, config_file: str | None) -> Iterator[Platform]:
    from tvilling.app import build_platform

    settings = _settings(config_file, data_dir=data_dir, store=store)
    with _errors(), build_platform(settings) as platform:
        yield platform


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except TvillingError as exc:
        click.echo(f"error: {exc.message}", err=True)
        for item in exc.fields.get("errors", [])[1:20]:
            if isinstance(item, dict):
                click.echo(f"  {item.get('message', item)}", err=True)
        sys.exit(1)


def _name_files(text: str, origins: list[str]) -> str:
    """Replace ``$[i]`` (an index into all imported documents) by the file it came from."""
    import re

    def name(m: re.Match[str]) -> str:
        i = int(m.group(1))
        return f"{origins[i]}: $" if i < len(origins) else m.group(0)

    return re.sub(r"\$\[(\d+)\]", name, text)


def _emit(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    elif text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tvilling")
def main() -> None:
    """Tvilling: live digital twins of physical assets."""


# -- serve --example ----------------------------------------------------------------------------
EXAMPLES = ("plant",)
#: C-MAPSS turbofan engines (``tvilling replay …/cmapss``): remaining life learnt from the fleet's histories
ENGINE_RUL: dict[str, Any] = {"name": "engine-rul", "model": "dtmi:tvilling:datasets:TurbofanEngine",
                              "method": "rul-fleet",
                              "inputs": ["setting1", "setting2", "setting3", *(f"s{i}" for i in range(1, 22))]}


def _example_settings(settings: Settings, name: str) -> Settings:
    """The settings plus the example's analytics and alarm rules (those named as configured ones are kept)."""
    from tvilling.demo import DemoOptions, demo_alarm_rules, demo_analytics

    o = DemoOptions()
    analytics = [*demo_analytics(o.speed, max(10, int(o.learn_s))), ENGINE_RUL]
    have = {a.get("name") for a in settings.analytics}
    have_rules = {r.get("name") for r in settings.alarm_rules}
    return settings.model_copy(update={
        "analytics": [*settings.analytics, *(a for a in analytics if a["name"] not in have)],
        "alarm_rules": [*settings.alarm_rules, *(r for r in demo_alarm_rules() if r["name"] not in have_rules)]})


def _seed_example(platform: Platform, name: str) -> None:
    """Register the example's models (the plant's and the data sets') and create its twins where missing."""
    from tvilling.demo import DemoOptions, make_plant, seed_twins
    from tvilling.models.builtin import builtin_documents

    platform.models.add(builtin_documents("datasets"))
    created = seed_twins(platform, make_plant(DemoOptions()))
    click.echo(f"example {name}: {created} twin(s) created; analytics "
               f"{', '.join(a['name'] for a in platform.settings.analytics)}", err=True)


@main.command()
@store_options
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option("--broker", default=None, metavar="URL",
              help="Ingest from this MQTT broker (mqtt://host:port): topics tvilling/{twin}/telemetry.")
@click.option("--mappings", "mqtt_mappings", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="TOML/JSON payload mappings for other topics and payload shapes.")
@click.option("--shared-group", "mqtt_shared_group", default=None,
              help="Join an MQTT shared subscription so several workers split the load.")
@click.option("--opcua", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Ingest from an OPC UA server: a TOML/JSON file with the endpoint and node bindings.")
@click.option("--example", type=click.Choice(EXAMPLES), default=None,
              help="Start with an example: 'plant' registers the example production line (line-1, 4 machines, as "
                   "`tvilling plant` simulates it) and adds the demo's analytics and alarm rules and the C-MAPSS "
                   "engine-rul analytic to the configured ones.")
def serve(data_dir: Path | None, store: str | None, config_file: str | None, host: str | None,
          port: int | None, broker: str | None, mqtt_mappings: Path | None, mqtt_shared_group: str | None,
          opcua: Path | None, example: str | None) -> None:
    """Run the HTTP API (embedded store in ./tvilling-data unless --store is given)."""
    import uvicorn

    from tvilling.api.app import create_app
    from tvilling.api.listen import check_listen

    settings = _settings(config_file, data_dir=data_dir, store=store, host=host, port=port, broker=broker,
                         mqtt_mappings=mqtt_mappings, mqtt_shared_group=mqtt_shared_group, opcua=opcua)
    with _errors():  # a taken port: one line and exit 1, before the store opens
        check_listen(settings.host, settings.port)
    if example is not None:
        settings = _example_settings(settings, example)
    with _errors():
        app = create_app(settings)
        if example is not None:
            _seed_example(app.state.platform, example)
    where = settings.store.split("@")[-1] if settings.store else f"embedded store in {settings.data_dir}/"
    click.echo(f"tvilling {__version__}: serving on http://{settings.host}:{settings.port} ({where})", err=True)
    # open streams never end by themselves: give them 5 s on shutdown, then close them
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_graceful_shutdown=5)


@main.command()
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
    from tvilling.core.errors import NotFound

    try:
        pace = None if speed == "max" else float(speed)
    except ValueError:
        raise click.BadParameter("use a number or 'max'", param_hint="--speed") from None
    if pace is not None and pace <= 0:
        raise click.BadParameter("must be positive", param_hint="--speed")
    if server is not None:
        _replay_through(server, path, fmt, create, pace, speed)
        return
    with _platform(data_dir, store, config_file) as p, _one_writer():
        series = rp.load(path, fmt)
        if create:
            from tvilling.models.builtin import builtin_documents

            p.models.add(builtin_documents("datasets"))
            for s in series:
                try:
                    p.twins.get(s.twin)
                except NotFound:
                    p.twins.put(s.twin, {"model": s.model, "attributes": {"origin": s.origin}}, actor="replay")
        total = sum(len(s) for s in series)
        click.echo(f"replaying {len(series)} series, {total} readings, speed {speed}", err=True)
        started = time.monotonic()
        with click.progressbar(length=total, label="replay", file=sys.stderr) as bar:
            answer = rp.replay(p.pipeline, series, speed=pace, progress=bar.update)
        took = time.monotonic() - started
    _replay_answer(answer, took)


def _replay_through(server: str, path: Path, fmt: str, create: bool, pace: float | None, speed: str) -> None:
    """``tvilling replay --server URL``: the same readings, posted to the server's ``POST /api/ingest``."""
    from tvilling.connect import replay as rp
    from tvilling.models.builtin import builtin_documents

    with _errors():
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


@contextmanager
def _one_writer() -> Iterator[None]:
    """Name the fix when the embedded history is held by another process (a running server, usually)."""
    from tvilling.core.errors import Unavailable

    try:
        yield
    except Unavailable as exc:
        if "pid" in exc.fields:
            exc.message = (f"{exc.message.split(';')[0]}. The embedded history (DuckDB) admits one writing "
                           "process: run this through the server that holds it with --server "
                           "http://HOST:PORT (or TVILLING_URL), or stop that server first")
        raise


@main.command("dead-letters")
@store_options
@click.option("--twin", default=None, help="Only this twin's.")
@click.option("--rule", default=None, help="Only those rejected by this rule (e.g. unknown_property).")
@click.option("--after", type=int, default=0, help="Only ids after this one.")
@click.option("--limit", type=int, default=50, show_default=True)
def dead_letters(data_dir: Path | None, store: str | None, config_file: str | None, twin: str | None,
                 rule: str | None, after: int, limit: int) -> None:
    """List rejected input with the reason and the raw payload."""
    with _platform(data_dir, store, config_file) as p:
        items = p.dead_letters.list(after=after, limit=limit, twin=twin, rule=rule)
        for d in items:
            doc = d.to_json()
            click.echo(f"#{doc['id']} {doc['received']} {doc['transport']} {doc['twin'] or '-'}"
                       f"{'.' + doc['property'] if doc['property'] else ''} [{doc['rule']}] {doc['reason']}")
            click.echo(f"    {doc['payload'][:300]}")
        if not items:
            click.echo("no dead letters", err=True)


# -- evaluation -------------------------------------------------------------------------------
@main.group("eval")
def eval_group() -> None:
    """Score the analytics on public benchmarks with their published protocols."""


def _report(result: dict[str, Any], as_json: bool, table: Callable[[dict[str, Any]], str]) -> None:
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    click.echo(json.dumps(public) if as_json else table(result))


@eval_group.command("skab")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder searched recursively for labelled SKAB CSV files.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Draw anomaly scores against the labels into this PNG.")
def eval_skab(data_dir: Path, as_json: bool, plot_path: Path | None) -> None:
    """Multivariate anomaly detection on SKAB: first 400 rows of each file train, the rest test."""
    from tvilling.analytics.evaluation import runs

    with _errors():
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

    with _errors():
        result = runs.run_nab(data_dir, labels)
        if plot_path is not None:
            runs.plot(result, plot_path)
    _report(_public(result), as_json, runs.table)


def _public(result: dict[str, Any]) -> dict[str, Any]:
    """A result without the per-row series kept for plotting."""
    return {k: v for k, v in result.items() if k not in ("series",)}


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

    with _errors():
        result = cmapss_run.run_cmapss(data_dir, subset, seeds=seeds)
        if plot_path is not None:
            cmapss_run.plot(result, plot_path)
    _report(result, as_json, cmapss_run.table)


# -- models -----------------------------------------------------------------------------------
@main.group()
def models() -> None:
    """Register and inspect DTDL models."""


@models.command("import")
@store_options
@click.argument("path_arg", metavar="PATH")
@click.option("--validate-only", is_flag=True, help="Validate fully, store nothing.")
def models_import(data_dir: Path | None, store: str | None, config_file: str | None, path_arg: str,
                  validate_only: bool) -> None:
    """Import DTDL interfaces from PATH: a .json file, every .json file under a folder, or the
    name of a built-in model set (plant, plant-v2, datasets)."""
    from tvilling.models.builtin import builtin_dir, builtin_names

    path = Path(path_arg)
    if not path.exists():
        if path_arg not in builtin_names():
            raise click.BadParameter(f"{path_arg!r} is neither a file or folder nor a built-in model set "
                                     f"({', '.join(builtin_names())})", param_hint="PATH")
        path = builtin_dir(path_arg)
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    if not files:
        raise click.UsageError(f"no .json files under {path}")
    docs: list[Any] = []
    origins: list[str] = []  # the file (and index in it) of each document, to name it in errors
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"{f}: not valid JSON: {exc}") from exc
        items = doc if isinstance(doc, list) else [doc]
        docs.extend(items)
        origins.extend(f"{f}[{i}]" if isinstance(doc, list) else str(f) for i in range(len(items)))
    with _platform(data_dir, store, config_file) as p:
        try:
            ids = p.models.add(docs, validate_only=validate_only)
        except TvillingError as exc:
            exc.message = _name_files(exc.message, origins)
            for item in exc.fields.get("errors", []):
                if isinstance(item, dict) and isinstance(item.get("message"), str):
                    item["message"] = _name_files(item["message"], origins)
            raise
    verb = "valid" if validate_only else "registered"
    click.echo(f"{len(ids)} model(s) {verb} from {len(files)} file(s):")
    for i in ids:
        click.echo(f"  {i}")


@models.command("list")
@store_options
def models_list(data_dir: Path | None, store: str | None, config_file: str | None) -> None:
    """List registered model versions."""
    with _platform(data_dir, store, config_file) as p:
        for rec in p.models.list():
            flag = "  (decommissioned)" if rec.decommissioned else ""
            click.echo(f"{rec.id}{flag}")


@models.command("get")
@store_options
@click.argument("dtmi")
def models_get(data_dir: Path | None, store: str | None, config_file: str | None, dtmi: str) -> None:
    """Print a model version and its DTDL definition."""
    with _platform(data_dir, store, config_file) as p:
        _emit(p.models.describe(dtmi))


@models.command("decommission")
@store_options
@click.argument("dtmi")
def models_decommission(data_dir: Path | None, store: str | None, config_file: str | None, dtmi: str) -> None:
    """Decommission a model version: existing twins stay, no new twins of it."""
    with _platform(data_dir, store, config_file) as p:
        p.models.decommission(dtmi)
    click.echo(f"{dtmi} decommissioned")


# -- twins ------------------------------------------------------------------------------------
@main.group()
def twins() -> None:
    """Create, read, patch, query twins and read their history."""


@twins.command("create")
@store_options
@click.argument("twin_id")
@click.option("--model", required=True, help="DTMI of the twin's model.")
@click.option("--attributes", default=None, help="JSON object (or @file).")
@click.option("--reported", default=None, help="JSON object (or @file).")
@click.option("--desired", default=None, help="JSON object (or @file).")
def twins_create(data_dir: Path | None, store: str | None, config_file: str | None, twin_id: str,
                 model: str, attributes: str | None, reported: str | None, desired: str | None) -> None:
    """Create (or replace) a twin."""
    body = {"model": model}
    for key, text in (("attributes", attributes), ("reported", reported), ("desired", desired)):
        if text is not None:
            body[key] = _json_arg(text, f"--{key}")
    with _platform(data_dir, store, config_file) as p:
        twin, created = p.twins.put(twin_id, body, actor="cli")
    click.echo(f"{'created' if created else 'replaced'} {twin_id} at revision {twin.revision}", err=True)
    _emit(twin.to_json())


@twins.command("get")
@store_options
@click.argument("twin_id")
@click.option("--revision", type=int, default=None, help="As it was at this revision.")
@click.option("--at", default=None, help="As it was at this ISO 8601 time.")
def twins_get(data_dir: Path | None, store: str | None, config_file: str | None, twin_id: str,
              revision: int | None, at: str | None) -> None:
    """Print a twin (now, or as it was)."""
    from tvilling.twins.service import parse_time

    with _platform(data_dir, store, config_file) as p:
        if revision is not None or at is not None:
            twin = p.twins.get_at(twin_id, revision=revision,
                                  at=parse_time(at, field="--at") if at else None)
        else:
            twin = p.twins.get(twin_id)
        _emit(twin.to_json())


@twins.command("patch")
@store_options
@click.argument("twin_id")
@click.argument("patch")
@click.option("--if-match", type=int, default=None, help="Fail unless the twin is at this revision.")
def twins_patch(data_dir: Path | None, store: str | None, config_file: str | None, twin_id: str,
                patch: str, if_match: int | None) -> None:
    """Merge-patch a twin: PATCH is JSON like '{"reported": {"speed": 1200}}' (or @file, or -)."""
    with _platform(data_dir, store, config_file) as p:
        twin = p.twins.patch(twin_id, _json_arg(patch, "PATCH"), actor="cli", if_match=if_match)
        _emit(twin.to_json())


@twins.command("delete")
@store_options
@click.argument("twin_id")
def twins_delete(data_dir: Path | None, store: str | None, config_file: str | None, twin_id: str) -> None:
    """Delete a twin."""
    with _platform(data_dir, store, config_file) as p:
        p.twins.delete(twin_id, actor="cli")
    click.echo(f"deleted {twin_id}")


@twins.command("relate")
@store_options
@click.argument("twin_id")
@click.argument("rel_id")
@click.option("--name", required=True, help="Relationship name declared by the model.")
@click.option("--target", required=True, help="Target twin id.")
@click.option("--properties", default=None, help="JSON object (or @file).")
def twins_relate(data_dir: Path | None, store: str | None, config_file: str | None, twin_id: str,
                 rel_id: str, name: str, target: str, properties: str | None) -> None:
    """Create or replace relationship REL_ID from TWIN_ID."""
    body = {"name": name, "target": target, "properties": _json_arg(properties, "--properties") or {}}
    with _platform(data_dir, store, config_file) as p:
        p.twins.set_relationship(twin_id, rel_id, body, actor="cli")
    click.echo(f"{twin_id} -[{name}]-> {target} ({rel_id})")


@twins.command("query")
@store_options
@click.argument("query")
@click.option("--all", "all_pages", is_flag=True, help="Follow the cursor through every page.")
def twins_query(data_dir: Path | None, store: str | None, config_file: str | None, query: str,
                all_pages: bool) -> None:
    """Run a query (JSON, @file or -); see `tvilling twins query-help`."""
    from tvilling.twins.query import encode_cursor

    doc = _json_arg(query, "QUERY")
    with _platform(data_dir, store, config_file) as p:
        while True:
            page = p.twins.query(doc)
            for twin in page.items:
                click.echo(json.dumps(twin.to_json(), default=str))
            if page.next is None or not all_pages:
                if page.next is not None:
                    click.echo(f"# more: add \"cursor\": \"{encode_cursor(page.next)}\"", err=True)
                return
            doc = {**doc, "cursor": encode_cursor(page.next)}


@twins.command("import")
@store_options
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", type=int, default=10_000, show_default=True)
def twins_import(data_dir: Path | None, store: str | None, config_file: str | None, path: Path,
                 batch_size: int) -> None:
    """Bulk-import twins from a JSON Lines file (one twin a line, with its relationships)."""
    from tvilling.twins.importer import import_twins

    def items() -> Iterator[Any]:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise click.ClickException(f"{path}:{n}: not valid JSON: {exc}") from exc

    with path.open("rb") as fh:
        lines = sum(1 for line in fh if line.strip())
    with _platform(data_dir, store, config_file) as p, \
            click.progressbar(length=lines, label="importing twins", file=sys.stderr) as bar:
        done = [0]

        def progress(n: int) -> None:
            bar.update(n - done[0])
            done[0] = n

        count = import_twins(p.twins, items(), batch_size=batch_size, actor="cli", progress=progress)
    click.echo(f"imported {count} twin(s)")


@twins.command("query-help")
def twins_query_help() -> None:
    """Explain the query form."""
    from tvilling.twins import query as q

    click.echo(q.__doc__ or "")


@twins.command("history")
@store_options
@click.argument("twin_id")
@click.option("--after", type=int, default=0, help="Only events after this revision.")
@click.option("--limit", type=int, default=100)
def twins_history(data_dir: Path | None, store: str | None, config_file: str | None, twin_id: str,
                  after: int, limit: int) -> None:
    """Print a twin's events, one JSON object a line."""
    with _platform(data_dir, store, config_file) as p:
        for e in p.twins.events(twin_id, after=after, limit=limit):
            click.echo(json.dumps(e.to_json(), default=str))


@twins.command("migrate")
@store_options
@click.argument("twin_id")
@click.argument("model")
@click.option("--dry-run", is_flag=True, help="Only report.")
def twins_migrate(data_dir: Path | None, store: str | None, config_file: str | None, twin_id: str,
                  model: str, dry_run: bool) -> None:
    """Migrate a twin to another model version, printing the validation report."""
    with _platform(data_dir, store, config_file) as p:
        _emit(p.twins.migrate(twin_id, model, actor="cli", dry_run=dry_run))


# -- alarms -------------------------------------------------------------------------------------
@main.group("alarms")
def alarms_group() -> None:
    """List, acknowledge, clear and shelve alarms; check the alarm rules of the settings."""


@alarms_group.command("list")
@store_options
@click.option("--state", type=click.Choice(["active", "acknowledged", "cleared"]), default=None)
@click.option("--twin", default=None, help="Only this twin's.")
@click.option("--severity", type=click.Choice(["critical", "major", "minor", "warning"]), default=None)
@click.option("--rule", default=None, help="Only this rule's (or rule group's).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--copies", is_flag=True, help="List the copies propagated to ancestors as rows of their own.")
@click.option("--json", "as_json", is_flag=True, help="Print the alarms as JSON.")
def alarms_list(data_dir: Path | None, store: str | None, config_file: str | None, state: str | None,
                twin: str | None, severity: str | None, rule: str | None, limit: int, copies: bool,
                as_json: bool) -> None:
    """Alarms, newest first: one per condition (with the ancestors it affects) unless --copies."""
    from tvilling.decisions.alarms import AlarmService

    with _platform(data_dir, store, config_file) as p:
        svc = AlarmService(p.alarm_store)
        items = svc.view(svc.list(state=state, twin=twin, severity=severity, rule=rule, limit=limit,
                                  grouped=not copies), grouped=not copies)
        if as_json:
            _emit(items)
            return
        for a in items:
            origin = f" (from {a['origin']})" if a["origin"] != a["twin"] else ""
            extra = f" affects {', '.join(a['affected'])}" if a.get("affected") else ""
            extra += f" [shelved until {a['shelved_until']}]" if a["shelved"] else ""
            click.echo(f"{a['id']} {a['state']:<12} {a['severity']:<8} {a['twin']}{origin} [{a['rule']}] "
                       f"x{a['count']} {a['message']}{extra}")
        if not items:
            click.echo("no alarms", err=True)


def _alarm_step(step: str, alarm_id: str, actor: str, note: str | None, data_dir: Path | None,
                store: str | None, config_file: str | None) -> None:
    from tvilling.decisions.alarms import AlarmService

    with _platform(data_dir, store, config_file) as p:
        svc = AlarmService(p.alarm_store)
        alarm = (svc.acknowledge if step == "ack" else svc.clear)(alarm_id, actor=actor, note=note)
        _emit(alarm.to_json())


@alarms_group.command("ack")
@store_options
@click.argument("alarm_id")
@click.option("--actor", default="cli", show_default=True, help="Who acknowledges it.")
@click.option("--note", default=None, help="Why, or what is being done.")
def alarms_ack(data_dir: Path | None, store: str | None, config_file: str | None, alarm_id: str, actor: str,
               note: str | None) -> None:
    """Acknowledge an active alarm (and the alarms propagated from it)."""
    _alarm_step("ack", alarm_id, actor, note, data_dir, store, config_file)


@alarms_group.command("clear")
@store_options
@click.argument("alarm_id")
@click.option("--actor", default="cli", show_default=True, help="Who clears it.")
@click.option("--note", default=None, help="Why.")
def alarms_clear(data_dir: Path | None, store: str | None, config_file: str | None, alarm_id: str, actor: str,
                 note: str | None) -> None:
    """Clear an active or acknowledged alarm (and the alarms propagated from it)."""
    _alarm_step("clear", alarm_id, actor, note, data_dir, store, config_file)


@alarms_group.command("shelve")
@store_options
@click.argument("twin_id")
@click.option("--for", "duration", required=True, help='How long: "30m", "2h", "1h30m" or seconds (up to 7 days).')
@click.option("--reason", required=True, help="Why (e.g. planned stop).")
@click.option("--actor", default="cli", show_default=True, help="Who shelves them.")
@click.option("--no-subtree", is_flag=True, help="Only the twin's own alarms, not those of the twins below it.")
def alarms_shelve(data_dir: Path | None, store: str | None, config_file: str | None, twin_id: str, duration: str,
                  reason: str, actor: str, no_subtree: bool) -> None:
    """Shelve a twin's alarms (and its subtree's) for a while: still recorded, not counted, ends by itself."""
    from tvilling.decisions.alarms import AlarmService
    from tvilling.decisions.alarms.shelves import descendants, parse_duration

    with _platform(data_dir, store, config_file) as p:
        seconds = parse_duration(duration, field="--for")
        p.twins.get(twin_id)
        covered = [twin_id] if no_subtree else \
            descendants(twin_id, lambda t: [r.target for r in p.twins.relationships(t)])
        svc = AlarmService(p.alarm_store)
        shelf, taken = svc.shelve(twin_id, twins=covered, duration_s=seconds, reason=reason, actor=actor,
                                  subtree=not no_subtree)
        _emit({**shelf.to_json(svc.clock()), "shelved": taken})


@alarms_group.command("unshelve")
@store_options
@click.argument("shelf_id")
@click.option("--actor", default="cli", show_default=True, help="Who ends the shelf.")
def alarms_unshelve(data_dir: Path | None, store: str | None, config_file: str | None, shelf_id: str,
                    actor: str) -> None:
    """End a shelf now: its alarms count again."""
    from tvilling.decisions.alarms import AlarmService

    with _platform(data_dir, store, config_file) as p:
        svc = AlarmService(p.alarm_store)
        _emit(svc.end_shelf(shelf_id, actor=actor).to_json(svc.clock()))


@alarms_group.command("shelves")
@store_options
@click.option("--active", is_flag=True, help="Only the shelves in effect now.")
def alarms_shelves(data_dir: Path | None, store: str | None, config_file: str | None, active: bool) -> None:
    """Shelves, newest first, as JSON."""
    from tvilling.decisions.alarms import AlarmService

    with _platform(data_dir, store, config_file) as p:
        svc = AlarmService(p.alarm_store)
        _emit([s.to_json(svc.clock()) for s in svc.shelves(active=True if active else None)])


@alarms_group.command("rules")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help=f"TOML config file (default ./tvilling.toml; env {CONFIG_ENV}).")
def alarms_rules(config_file: str | None) -> None:
    """Check the alarm rules of the settings and print them as they will run."""
    import msgspec

    from tvilling.decisions.alarms import parse_rules

    settings = _settings(config_file)
    with _errors():
        rules = parse_rules(settings.alarm_rules)
    _emit([msgspec.to_builtins(r) for r in rules])
    click.echo(f"{len(rules)} alarm rule(s) OK", err=True)


# -- analytics ----------------------------------------------------------------------------------
@main.group("analytics")
def analytics_group() -> None:
    """Configured analytics: versions, training from stored history, backtests, promotion, forecasts."""


def _analytic(p: Platform, name: str) -> Any:
    from tvilling.core.errors import NotFound

    spec = p.analytics.spec(name)
    if spec is None:
        raise NotFound(f"no analytic named {name!r} is configured; there are "
                       f"{', '.join(s.name for s in p.analytics.specs) or 'none'} (see [[analytics]] in "
                       "tvilling.toml)")
    return spec


def _select_twins(p: Platform, spec: Any, twins: tuple[str, ...], prefix: str | None,
                  exclude: tuple[str, ...] = ()) -> list[str]:
    from tvilling.twins.query import encode_cursor

    def pages() -> Iterator[list[str]]:
        doc: dict[str, Any] = {"model": spec.model, "limit": 1000}
        while True:
            page = p.twins.query(doc)
            yield [t.id for t in page.items]
            if page.next is None:
                return
            doc = {**doc, "cursor": encode_cursor(page.next)}

    return _chosen(twins, prefix, exclude, pages)


def _chosen(twins: tuple[str, ...], prefix: str | None, exclude: tuple[str, ...],
            pages: Callable[[], Iterator[list[str]]]) -> list[str]:
    """--twin ids, then (with --prefix) every twin of the model whose id starts so, less those --exclude names."""
    chosen = list(twins)
    if prefix is not None:
        for ids in pages():
            chosen.extend(t for t in ids if t.startswith(prefix))
    chosen = [t for t in chosen if not any(t.startswith(x) for x in exclude)]
    if not chosen:
        raise click.UsageError("name the twins: --twin ID (repeatable) and/or --prefix PREFIX"
                               + (" (--exclude left none)" if exclude else ""))
    return sorted(set(chosen), key=chosen.index)


def _remote_twins(api: Any, model: str, twins: tuple[str, ...], prefix: str | None,
                  exclude: tuple[str, ...] = ()) -> list[str]:
    """:func:`_select_twins` through a server's query API."""
    def pages() -> Iterator[list[str]]:
        doc: dict[str, Any] = {"model": model, "limit": 1000}
        while True:
            page = api.request("POST", "/api/query", doc)[1]
            yield [t["id"] for t in page["items"]]
            if page.get("next") is None:
                return
            doc = {**doc, "cursor": page["next"]}

    return _chosen(twins, prefix, exclude, pages)


def _us(text: str | None, default: int) -> int:
    """``--from``/``--to``: ISO 8601 with a zone or epoch milliseconds, as the HTTP API reads them."""
    from tvilling.api.history import _time

    return _time(text, "time", default)


_twin_opts = [click.option("--twin", "twins", multiple=True, help="A twin (repeatable)."),
              click.option("--prefix", default=None, help="Every twin of the analytic's model whose id starts so."),
              click.option("--from", "start", default=None, help="Start of the history range (ISO 8601 or epoch ms)."),
              click.option("--to", "end", default=None, help="End of the history range.")]


def twin_options(fn: F) -> F:
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

        with _errors():
            for item in Server(server).request("GET", "/api/analytics")[1]["items"]:
                _emit(item)
        return
    with _platform(data_dir, store, config_file) as p:
        for spec in p.analytics.specs:
            _emit(describe(p.analytics, spec))


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
    from tvilling.analytics.binding.lifecycle import END, train

    if server is not None:
        _analytics_through(server, name, twins, prefix, exclude, "train",
                           {"from": start, "to": end, "promote": promote})
        return
    with _platform(data_dir, store, config_file) as p, _one_writer():
        spec = _analytic(p, name)
        chosen = _select_twins(p, spec, twins, prefix, exclude)
        with click.progressbar(length=len(chosen), label=f"reading history of {len(chosen)} twin(s)",
                               file=sys.stderr) as bar:
            def progress(done: int, total: int) -> None:
                bar.update(done - bar.pos)

            version = train(spec, p.analytics_registry, p.history, chosen, start_us=_us(start, 0),
                            end_us=_us(end, END), promote=promote, progress=progress)
        _emit(version.to_json())


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
    from tvilling.analytics.binding.lifecycle import END
    from tvilling.analytics.binding.spec import FLEET
    from tvilling.api.analytics import held_out_backtest

    if server is not None:
        _analytics_through(server, name, twins, prefix, (), f"versions/{version}/backtest",
                           {"from": start, "to": end, "scope": scope, "in_sample": in_sample})
        return
    with _platform(data_dir, store, config_file) as p, _one_writer():
        spec = _analytic(p, name)
        chosen = _select_twins(p, spec, twins, prefix)
        scope = scope or (chosen[0] if spec.per_twin else FLEET)
        v = p.analytics_registry.get(name, scope, version)
        report = held_out_backtest(spec, p.analytics_registry, p.history, v, chosen, _us(start, 0),
                                   _us(end, END), in_sample)
        _emit({k: v for k, v in report.items() if k != "per_twin"} | {"per_twin": report["per_twin"]})


def _analytics_through(server: str, name: str, twins: tuple[str, ...], prefix: str | None,
                       exclude: tuple[str, ...], action: str, body: dict[str, Any]) -> None:
    """``analytics train|backtest --server URL``: the twins chosen through the server's query API, then its
    ``POST /api/analytics/{name}/{action}``; prints the answer as the local command does."""
    import urllib.parse

    from tvilling.connect.replay import Server

    with _errors():
        api = Server(server)
        quoted = urllib.parse.quote(name, safe="")
        model = api.request("GET", f"/api/analytics/{quoted}")[1]["model"]
        chosen = _remote_twins(api, model, twins, prefix, exclude)
        click.echo(f"{action.rsplit('/', 1)[-1]} {name} on {len(chosen)} twin(s) through {api.url}", err=True)
        answer = api.request("POST", f"/api/analytics/{quoted}/{action}", {"twins": chosen, **body})[1]
    if isinstance(answer, dict) and "per_twin" in answer:  # a backtest report: the figures first
        answer = {k: v for k, v in answer.items() if k != "per_twin"} | {"per_twin": answer["per_twin"]}
    _emit(answer)


@analytics_group.command("promote")
@store_options
@click.argument("name")
@click.argument("version", type=int)
@click.option("--scope", default=None, help="The twin, for per-twin analytics (fleet models: *).")
def analytics_promote(data_dir: Path | None, store: str | None, config_file: str | None, name: str, version: int,
                      scope: str | None) -> None:
    """Make VERSION the one that runs (a running server picks it up within its upkeep interval)."""
    with _platform(data_dir, store, config_file) as p:
        spec = _analytic(p, name)
        if scope is None:
            if spec.per_twin:
                raise click.UsageError(f"analytic {name!r} is fitted per twin: name the twin with --scope TWIN")
            scope = "*"
        _emit(p.analytics_registry.promote(name, scope, version).to_json())


@analytics_group.command("forecast")
@store_options
@click.argument("twin_id")
@click.argument("prop", metavar="PROPERTY")
@click.option("--horizon", type=int, default=10, show_default=True, help="Steps ahead.")
@click.option("--points", type=int, default=500, show_default=True, help="Newest readings used.")
def analytics_forecast(data_dir: Path | None, store: str | None, config_file: str | None, twin_id: str, prop: str,
                       horizon: int, points: int) -> None:
    """Forecast PROPERTY of TWIN_ID with an 80 % interval, from its newest readings."""
    from tvilling.analytics.forecast import holt

    with _platform(data_dir, store, config_file) as p:
        p.twins.get(twin_id)
        from tvilling.analytics.binding.frames import newest_points

        values = [x.value for x in newest_points(p.history, twin_id, prop, points) if x.value == x.value]
        fc = holt(values, horizon)
        _emit({"twin": twin_id, "property": prop, "points_used": len(values), "alpha": fc.alpha, "beta": fc.beta,
               "mean": fc.mean, "lower": fc.lower, "upper": fc.upper})


@analytics_group.command("family-train")
@click.option("--skab", "skab_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Labelled SKAB-layout files (recursively); each file's folder names its fault family.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--horizon", type=click.IntRange(1, 600), default=15, show_default=True,
              help="Rows from an alarm's start that name its family.")
def analytics_family_train(skab_dir: Path, out_path: Path, horizon: int) -> None:
    """Train a fault-family classifier for a mewma analytic (params.family_classifier = OUT)."""
    from tvilling.analytics.detectors.multivariate import MultivariateDetector
    from tvilling.analytics.detectors.mv_calibration import calibrate_scales
    from tvilling.analytics.diagnostics import FamilyClassifier, family_evaluation, skab_family_segments
    from tvilling.analytics.evaluation.runs import _skab_files
    from tvilling.analytics.evaluation.skab import TRAIN_ROWS

    with _errors():
        files = _skab_files(skab_dir)
        scales = calibrate_scales([d[1][:TRAIN_ROWS] for _p, d in files], alpha=MultivariateDetector.alpha)
        segments = skab_family_segments(skab_dir, horizon=horizon, scales=scales)
        clf = FamilyClassifier().fit([g.signature for g in segments], [g.family for g in segments])
        check = family_evaluation([(g.family, g.signature) for g in segments], groups=[g.file for g in segments])
        loo = {k: check[k] for k in ("family_accuracy", "family_balanced_accuracy", "family_majority_accuracy")}
        doc: dict[str, Any] = {"classifier": clf.to_dict(), "scales": [float(x) for x in scales], "horizon": horizon,
               "inputs": list(files[0][1][4]), "segments": len(segments), "leave_one_file_out": loo}
        out_path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        _emit({"out": str(out_path), "segments": len(segments), **loo})

# -- plant ---------------------------------------------------------------------------------------
@main.command()
@click.option("--machines", type=click.IntRange(1, 1_000_000), default=4, show_default=True)
@click.option("--speed", type=click.FloatRange(min=0.001), default=60.0, show_default=True,
              help="Plant seconds per wall second.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--broker", default="mqtt://127.0.0.1:1883", show_default=True, metavar="URL",
              help="Where to publish; 'embedded' starts an MQTT broker on 127.0.0.1 in this process.")
@click.option("--opcua-port", type=click.IntRange(0, 65535), default=None,
              help="Also serve the machines over OPC UA on this port (0: a free one); needs tvilling[opcua].")
@click.option("--faults/--no-faults", default=True, show_default=True, help="The default scenario's bearing defect.")
@click.option("--line", default="line-1", show_default=True, help="The line's twin id (machines are LINE-m01…).")
def plant(machines: int, speed: float, seed: int, broker: str, opcua_port: int | None, faults: bool,
          line: str) -> None:
    """Run the simulated production line alone, as virtual devices (MQTT, optionally OPC UA)."""
    import asyncio

    from tvilling.plant import PlantOptions, running_plant

    options = PlantOptions(machines=machines, seed=seed, speed=speed, scenario="default" if faults else None,
                           line=line, broker=None if broker == "embedded" else broker, opcua_port=opcua_port)

    async def run() -> None:
        async with running_plant(options) as rig:
            click.echo(f"plant {line}: {machines} machines at {speed:g}x, MQTT {rig.broker_url}"
                       + (f", OPC UA {rig.opcua_url}" if rig.opcua_url else "") + " (Ctrl+C stops)")
            await asyncio.Event().wait()

    with _errors(), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())

# -- demo ---------------------------------------------------------------------------------------
@main.command()
@click.option("--machines", type=click.IntRange(1, 200), default=4, show_default=True, help="Machines on the line.")
@click.option("--speed", type=click.FloatRange(min=1.0, max=3600.0), default=60.0, show_default=True,
              help="Plant seconds per wall second.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same run.")
@click.option("--duration", type=click.FloatRange(min=1.0), default=None, help="Stop after this many seconds.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address of the dashboard and API.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the demo's twins and history here (default: a fresh temporary folder).")
@click.option("--broker", default=None, metavar="URL",
              help="Use this MQTT broker (e.g. mqtt://127.0.0.1:1883) instead of the embedded one.")
@click.option("--auto/--manual", default=True, show_default=True,
              help="Auto mode slows a machine down when a bearing of it is predicted to fail soon; "
                   "--manual leaves it to you.")
@click.option("--learn", "learn_s", type=click.FloatRange(min=10.0), default=60.0, show_default=True,
              help="Seconds each bearing learns its normal behaviour before it is scored.")
@click.option("--fault-at", "fault_at_s", type=click.FloatRange(min=0.0), default=90.0, show_default=True,
              help="Seconds after the start when the bearing defect begins.")
def demo(machines: int, speed: float, seed: int, duration: float | None, host: str, port: int,
         data_dir: Path | None, broker: str | None, auto: bool, learn_s: float, fault_at_s: float) -> None:
    """Run the platform, a simulated production line and the dashboard in one process."""
    import asyncio

    from tvilling.demo import DemoOptions, run_demo

    options = DemoOptions(machines=machines, speed=speed, seed=seed, duration=duration, host=host, port=port,
                          data_dir=data_dir, broker=broker, auto=auto, learn_s=learn_s, fault_at_s=fault_at_s)
    with _errors(), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(options, echo=lambda text: click.echo(text)))


if __name__ == "__main__":
    main()
