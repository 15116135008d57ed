"""``tvilling tokens create|list|revoke``: API tokens for services and scripts, on the store of the settings.

``create`` prints the token's secret once (only its hash is stored); a service sends it as
``Authorization: Bearer tvl_…``.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tvilling.cli.common import emit, errors, settings_from, store_options
from tvilling.security.tokens import ROLES

if TYPE_CHECKING:
    from tvilling.backend.tokens import TokenStore


@contextmanager
def _tokens(data_dir: Path | None, store: str | None, config_file: str | None) -> Iterator[TokenStore]:
    from tvilling.backend.stores import open_store

    settings = settings_from(config_file, data_dir=data_dir, store=store)
    with errors():
        opened: TokenStore = open_store("tokens", settings.store, data_dir=settings.data_dir,
                                        schema=settings.pg_schema)
        try:
            yield opened
        finally:
            opened.close()


def _audited(data_dir: Path | None, store: str | None, config_file: str | None, action: str, token: Any) -> None:
    """Append ``action`` on ``token`` to the audit chain when the settings turn audit on (or require auth)."""
    from tvilling.backend.stores import open_store
    from tvilling.security.audit_events import enabled, record, token_detail

    settings = settings_from(config_file, data_dir=data_dir, store=store)
    if not enabled(settings):
        return
    with errors():
        chain = open_store("audit", settings.store, data_dir=settings.data_dir, schema=settings.pg_schema)
        try:
            record(chain, _who(), action, f"token:{token.id}", token_detail(token))
        finally:
            chain.close()


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:128]
    except (KeyError, OSError):
        return "cli"


@click.group("tokens")
def tokens_group() -> None:
    """API tokens for services and scripts: create (the secret is shown once), list, revoke."""


@tokens_group.command("create")
@store_options
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the token may do.")
@click.option("--twins", default="*", show_default=True, help="The twins it may address: a glob, e.g. 'line-1-*'.")
@click.option("--expires", default=None, metavar="DURATION", help="Lifetime, e.g. 30d, 12h, 2w (default: none).")
def create(data_dir: Path | None, store: str | None, config_file: str | None, name: str, role: str, twins: str,
           expires: str | None) -> None:
    """Create an API token and print its secret (shown this once only)."""
    from tvilling.security.tokens import issue

    with _tokens(data_dir, store, config_file) as opened, errors():
        token, secret = issue(opened, name, role, twins=twins, expires_in=expires, by=_who(), now=datetime.now(UTC))
    _audited(data_dir, store, config_file, "token.create", token)
    until = token.expires.isoformat() if token.expires else "never"
    click.echo(f"token {token.name} (id {token.id}, role {token.role}, twins {token.twins}, expires {until})",
               err=True)
    click.echo(secret)
    click.echo("Keep this secret now: it is stored only as a hash and will not be shown again. Send it as "
               "'Authorization: Bearer <secret>'.", err=True)


@tokens_group.command("list")
@store_options
def list_tokens(data_dir: Path | None, store: str | None, config_file: str | None) -> None:
    """List the API tokens (never their secrets) as JSON."""
    with _tokens(data_dir, store, config_file) as opened, errors():
        emit([t.to_json() for t in opened.list()])


@tokens_group.command("revoke")
@store_options
@click.argument("token_id")
def revoke(data_dir: Path | None, store: str | None, config_file: str | None, token_id: str) -> None:
    """Revoke the API token TOKEN_ID: it is refused from now on."""
    with _tokens(data_dir, store, config_file) as opened, errors():
        token = opened.revoke(token_id, at=datetime.now(UTC))
    _audited(data_dir, store, config_file, "token.revoke", token)
    click.echo(f"token {token.name} (id {token.id}) revoked at {token.revoked.isoformat() if token.revoked else ''}")
