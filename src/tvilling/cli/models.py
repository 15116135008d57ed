"""``tvilling models …``: register and inspect DTDL models."""

from __future__ import annotations

from pathlib import Path

import click

from tvilling.cli.common import emit, opened_platform, store_options
from tvilling.core.errors import Invalid, NotFound


@click.group("models")
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
    from tvilling.models import files as mf

    try:
        path = mf.model_source(path_arg)
    except NotFound as exc:
        raise click.BadParameter(exc.message, param_hint="PATH") from None
    try:
        found = mf.json_files(path)
    except Invalid as exc:
        raise click.UsageError(exc.message) from None
    try:
        docs = mf.read_documents(found)
    except Invalid as exc:
        raise click.ClickException(exc.message) from exc
    with opened_platform(data_dir, store, config_file) as p:
        ids = mf.add_documents(p.models, docs, validate_only=validate_only)
    verb = "valid" if validate_only else "registered"
    click.echo(f"{len(ids)} model(s) {verb} from {len(found)} file(s):")
    for i in ids:
        click.echo(f"  {i}")


@models.command("list")
@store_options
def models_list(data_dir: Path | None, store: str | None, config_file: str | None) -> None:
    """List registered model versions."""
    with opened_platform(data_dir, store, config_file) as p:
        for rec in p.models.list():
            flag = "  (decommissioned)" if rec.decommissioned else ""
            click.echo(f"{rec.id}{flag}")


@models.command("get")
@store_options
@click.argument("dtmi")
def models_get(data_dir: Path | None, store: str | None, config_file: str | None, dtmi: str) -> None:
    """Print a model version and its DTDL definition."""
    with opened_platform(data_dir, store, config_file) as p:
        emit(p.models.describe(dtmi))


@models.command("decommission")
@store_options
@click.argument("dtmi")
def models_decommission(data_dir: Path | None, store: str | None, config_file: str | None, dtmi: str) -> None:
    """Decommission a model version: existing twins stay, no new twins of it."""
    with opened_platform(data_dir, store, config_file) as p:
        p.models.decommission(dtmi)
    click.echo(f"{dtmi} decommissioned")
