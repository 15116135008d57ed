"""``tvilling twins …``: create, read, patch, relate, query, import twins and read their events."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from tvilling.cli.common import emit, json_arg, opened_platform, store_options
from tvilling.core.errors import Invalid


@click.group("twins")
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
            body[key] = json_arg(text, f"--{key}")
    with opened_platform(data_dir, store, config_file) as p:
        twin, created = p.twins.put(twin_id, body, actor="cli")
    click.echo(f"{'created' if created else 'replaced'} {twin_id} at revision {twin.revision}", err=True)
    emit(twin.to_json())


@twins.command("get")
@store_options
@click.argument("twin_id")
@click.option("--revision", type=int, default=None, help="As it was at this revision.")
@click.option("--at", default=None, help="As it was at this ISO 8601 time.")
def twins_get(data_dir: Path | None, store: str | None, config_file: str | None, twin_id: str,
              revision: int | None, at: str | None) -> None:
    """Print a twin (now, or as it was)."""
    from tvilling.twins.service import parse_time

    with opened_platform(data_dir, store, config_file) as p:
        if revision is not None or at is not None:
            twin = p.twins.get_at(twin_id, revision=revision,
                                  at=parse_time(at, field="--at") if at else None)
        else:
            twin = p.twins.get(twin_id)
        emit(twin.to_json())


@twins.command("patch")
@store_options
@click.argument("twin_id")
@click.argument("patch")
@click.option("--if-match", type=int, default=None, help="Fail unless the twin is at this revision.")
def twins_patch(data_dir: Path | None, store: str | None, config_file: str | None, twin_id: str,
                patch: str, if_match: int | None) -> None:
    """Merge-patch a twin: PATCH is JSON like '{"reported": {"speed": 1200}}' (or @file, or -)."""
    with opened_platform(data_dir, store, config_file) as p:
        twin = p.twins.patch(twin_id, json_arg(patch, "PATCH"), actor="cli", if_match=if_match)
        emit(twin.to_json())


@twins.command("delete")
@store_options
@click.argument("twin_id")
def twins_delete(data_dir: Path | None, store: str | None, config_file: str | None, twin_id: str) -> None:
    """Delete a twin."""
    with opened_platform(data_dir, store, config_file) as p:
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
    body = {"name": name, "target": target, "properties": json_arg(properties, "--properties") or {}}
    with opened_platform(data_dir, store, config_file) as p:
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

    doc = json_arg(query, "QUERY")
    with opened_platform(data_dir, store, config_file) as p:
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
    from tvilling.twins.jsonl import count_items, read_items

    def items() -> Iterator[Any]:
        try:
            yield from read_items(path)
        except Invalid as exc:  # a line that is not JSON: a usage problem of the file, not of a twin
            raise click.ClickException(exc.message) from exc

    with opened_platform(data_dir, store, config_file) as p, \
            click.progressbar(length=count_items(path), label="importing twins", file=sys.stderr) as bar:
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
    with opened_platform(data_dir, store, config_file) as p:
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
    with opened_platform(data_dir, store, config_file) as p:
        emit(p.twins.migrate(twin_id, model, actor="cli", dry_run=dry_run))
