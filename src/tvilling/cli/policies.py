"""``tvilling policies list|put FILE|delete ID``: authorisation policies, on the store of the settings.

``put`` reads a policy (or a list of policies) as JSON from FILE (``-`` for standard input) and creates or
replaces each by its id; a running server applies the change within a quarter second.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

from tvilling.cli.common import emit, errors, settings_from, store_options

if TYPE_CHECKING:
    from tvilling.backend.policies import PolicyStore


@contextmanager
def _policies(data_dir: Path | None, store: str | None, config_file: str | None) -> Iterator[PolicyStore]:
    from tvilling.backend.stores import open_store

    settings = settings_from(config_file, data_dir=data_dir, store=store)
    with errors():
        opened: PolicyStore = open_store("policies", settings.store, data_dir=settings.data_dir,
                                         schema=settings.pg_schema)
        try:
            yield opened
        finally:
            opened.close()


@click.group("policies")
def policies_group() -> None:
    """Authorisation policies: grant or revoke actions on twins, subgraphs, models, paths and kinds of data."""


@policies_group.command("list")
@store_options
def list_policies(data_dir: Path | None, store: str | None, config_file: str | None) -> None:
    """Print every policy (JSON), by id."""
    with _policies(data_dir, store, config_file) as opened:
        emit([p.to_json() for p in opened.list()])


@policies_group.command("put")
@store_options
@click.argument("file", type=click.File("r"))
def put(data_dir: Path | None, store: str | None, config_file: str | None, file: TextIO) -> None:
    """Create or replace the policies in FILE (a JSON policy or a list of them; - for standard input)."""
    from tvilling.core.errors import Malformed
    from tvilling.security.policies import Policy

    with errors():
        try:
            doc = json.load(file)
        except ValueError as exc:
            raise Malformed(f"{getattr(file, 'name', 'FILE')}: not JSON: {exc}", field="file") from None
        policies = [Policy.from_json(d) for d in (doc if isinstance(doc, list) else [doc])]
        with _policies(data_dir, store, config_file) as opened:
            emit([{"id": p.id, "created": opened.put(p)} for p in policies])


@policies_group.command("delete")
@store_options
@click.argument("policy_id")
def delete(data_dir: Path | None, store: str | None, config_file: str | None, policy_id: str) -> None:
    """Delete the policy POLICY_ID (printed as it was)."""
    with _policies(data_dir, store, config_file) as opened:
        emit(opened.delete(policy_id).to_json())
