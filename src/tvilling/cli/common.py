"""What every command module shares: the store and server options, settings, the platform, errors, output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tvilling.config import CONFIG_ENV, Settings, load_settings
from tvilling.core.errors import TvillingError

if TYPE_CHECKING:
    from tvilling.app import Platform

F = TypeVar("F", bound=Callable[..., Any])


def config_option(fn: F) -> F:
    """--config FILE: the TOML config file (default ./tvilling.toml; env TVILLING_CONFIG)."""
    return click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
                        help=f"TOML config file (default ./tvilling.toml; env {CONFIG_ENV}).")(fn)


def store_options(fn: F) -> F:
    """--data-dir / --store / --config, shared by every command that opens the store."""
    fn = config_option(fn)
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


def settings_from(config_file: str | None, **overrides: Any) -> Settings:
    """The settings (config file, ``TVILLING_*`` variables, then these flags); bad ones are a usage error."""
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
def opened_platform(data_dir: Path | None, store: str | None, config_file: str | None) -> Iterator[Platform]:
    """The platform over the store these options name, closed on the way out; its errors as :func:`errors`."""
    from tvilling.app import build_platform

    settings = settings_from(config_file, data_dir=data_dir, store=store)
    with errors(), build_platform(settings) as platform:
        yield platform


@contextmanager
def errors() -> Iterator[None]:
    """A :class:`TvillingError` becomes ``error: message`` (and its first listed errors) on stderr, exit 1."""
    try:
        yield
    except TvillingError as exc:
        click.echo(f"error: {exc.message}", err=True)
        for item in exc.fields.get("errors", [])[1:20]:
            if isinstance(item, dict):
                click.echo(f"  {item.get('message', item)}", err=True)
        sys.exit(1)


@contextmanager
def one_writer() -> Iterator[None]:
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


def emit(value: Any) -> None:
    """Print a value as indented JSON."""
    click.echo(json.dumps(value, indent=2, default=str))


def json_arg(text: str | None, what: str) -> Any:
    """A JSON argument given inline, as ``@file`` or as ``-`` (stdin); ``None`` stays ``None``."""
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
