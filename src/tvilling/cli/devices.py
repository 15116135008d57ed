"""``tvilling devices init|server|add|list|remove``: device credentials and ACLs in the MQTT broker.

They talk to Mosquitto's dynamic security plugin as its admin, from ``--broker`` or the setting
``broker_admin`` (``TVILLING_BROKER_ADMIN=mqtt://admin:PASSWORD@host:port``; prefer the variable: a
command line is visible to every local user). A generated password is printed once, on stdout; the
admin's credentials are never printed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tvilling.cli.common import config_option, emit, errors, settings_from

if TYPE_CHECKING:
    from tvilling.security.dynsec import DynsecClient

F = TypeVar("F", bound=Callable[..., Any])


def _broker_options(fn: F) -> F:
    fn = config_option(fn)
    return click.option("--broker", default=None, metavar="URL",
                        help="The broker's dynamic-security admin, mqtt://ADMIN:PASSWORD@HOST:PORT (default: the "
                             "setting broker_admin, env TVILLING_BROKER_ADMIN).")(fn)


def _password_option(fn: F) -> F:
    return click.option("--password", default=None, metavar="TEXT|-",
                        help="Use this password ('-': read it from stdin) instead of generating one.")(fn)


@contextmanager
def _control(broker: str | None, config_file: str | None) -> Iterator[DynsecClient]:
    from tvilling.security.dynsec import DynsecClient

    settings = settings_from(config_file)
    url = broker or settings.broker_admin
    if not url:
        raise click.UsageError("name the broker's admin: --broker mqtt://ADMIN:PASSWORD@HOST:PORT or "
                               "TVILLING_BROKER_ADMIN")
    with errors(), DynsecClient(url, ca_file=settings.mqtt_ca, cert_file=settings.mqtt_cert,
                                key_file=settings.mqtt_key) as client:
        yield client


def _password(value: str | None) -> str | None:
    if value == "-":
        text = sys.stdin.readline().rstrip("\r\n")
        if not text:
            raise click.UsageError("--password -: no password on stdin")
        return text
    return value


def _show_secret(what: str, secret: str, given: bool) -> None:
    if given:
        click.echo(f"{what}: the password given is set", err=True)
        return
    click.echo(secret)
    click.echo(f"Keep this password now: it is {what}'s, stored only as a hash, and will not be shown again.",
               err=True)


@click.group("devices")
def devices_group() -> None:
    """Device credentials and ACLs in the MQTT broker (Mosquitto's dynamic security plugin)."""


@devices_group.command("init")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--admin", default="admin", show_default=True, help="Username of the broker's admin.")
@_password_option
@click.option("--owner", default=None, help="Give the file to this user (the broker's, e.g. mosquitto).")
def init(file: Path, admin: str, password: str | None, owner: str | None) -> None:
    """Write the plugin's first configuration FILE holding only the admin (never overwrites)."""
    from tvilling.security.devices import new_password
    from tvilling.security.dynsec import write_initial_config

    given = _password(password)
    secret = given if given is not None else new_password()
    with errors():
        write_initial_config(file, admin, secret, owner=owner)
    click.echo(f"wrote {file}: admin {admin!r}; everything else is denied until provisioned", err=True)
    _show_secret(f"the admin {admin!r}", secret, given is not None)


@devices_group.command("server")
@_broker_options
@click.argument("name")
@_password_option
@click.option("--read", "read", multiple=True, metavar="FILTER",
              help="Topic filter the server may read (repeatable; default tvilling/#). Add mapped topics here.")
def server(broker: str | None, config_file: str | None, name: str, password: str | None,
           read: tuple[str, ...]) -> None:
    """Create the client NAME for the Tvilling server: reads telemetry and answers, sends commands."""
    from tvilling.security.devices import SERVER_READ, add_server

    given = _password(password)
    with _control(broker, config_file) as control, errors():
        secret = add_server(control, name, password=given, read=read or SERVER_READ)
    click.echo(f"server client {name} created; connect Tvilling with --broker mqtt://{name}:PASSWORD@HOST:PORT",
               err=True)
    _show_secret(f"server {name!r}", secret, given is not None)


@devices_group.command("add")
@_broker_options
@click.argument("device")
@click.option("--twins", required=True, metavar="T1,T2", help="The twins this device speaks for (comma-separated).")
@_password_option
def add(broker: str | None, config_file: str | None, device: str, twins: str, password: str | None) -> None:
    """Create DEVICE's broker client: it may publish only its twins' telemetry and answers, and read only their
    commands and desired state."""
    from tvilling.security.devices import add_device

    names = [t.strip() for t in twins.split(",") if t.strip()]
    given = _password(password)
    with _control(broker, config_file) as control, errors():
        made, secret = add_device(control, device, names, password=given)
    click.echo(f"device {made.name} created for twins {', '.join(made.twins)}", err=True)
    _show_secret(f"device {made.name!r}", secret, given is not None)


@devices_group.command("list")
@_broker_options
def list_devices(broker: str | None, config_file: str | None) -> None:
    """List the provisioned devices and their twins as JSON (never passwords)."""
    from tvilling.security import devices

    with _control(broker, config_file) as control, errors():
        emit([d.to_json() for d in devices.list_devices(control)])


@devices_group.command("remove")
@_broker_options
@click.argument("device")
def remove(broker: str | None, config_file: str | None, device: str) -> None:
    """Delete DEVICE's client and role: it is disconnected now and refused from now on."""
    from tvilling.security.devices import remove_device

    with _control(broker, config_file) as control, errors():
        remove_device(control, device)
    click.echo(f"device {device} removed")
