"""``tvilling policies list|put FILE|delete ID``: authorisation policies, on the store of the settings.

``put`` reads a policy (or a list of policies) as JSON from FILE (``-`` for standard input) and creates or
replaces each by its id; a running server applies the change within a quarter second. Each change is
appended to the audit chain (``policy.put``, ``policy.delete``) when the settings turn audit on.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from tvilling.cli.common import emit, errors, settings_from, store_options

if TYPE_CHECKING:
    from tvilling.backend.policies import PolicyStore
    from tvilling.security.policies import Policy


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


def _audited(data_dir: Path | None, store: str | None, config_file: str | None,
             changes: list[tuple[str, Policy, dict[str, Any]]]) -> None:
    """Append each change (action, policy, detail) to the audit chain when the settings turn audit on (or
    require auth): the whole policy in the detail, and for a put, in the request hash."""
    from tvilling.backend.stores import open_store
    from tvilling.security.audit_events import enabled, record

    settings = settings_from(config_file, data_dir=data_dir, store=store)
    if not enabled(settings):
        return
    with errors():
        chain = open_store("audit", settings.store, data_dir=settings.data_dir, schema=settings.pg_schema)
        try:
            for action, policy, detail in changes:
                record(chain, _who(), action, f"policy:{policy.id}", {"policy": policy.to_json(), **detail},
                       request=policy.to_json() if action == "policy.put" else None)
        finally:
            chain.close()


def _who() -> str:
    """The CLI's actor: ``cli:<login>``, a name given by the system, not proven by a credential."""
    try:
        return f"cli:{getpass.getuser()}"[:128]
    except (KeyError, OSError):
        return "cli"


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
            done = [(p, opened.put(p)) for p in policies]
    _audited(data_dir, store, config_file, [("policy.put", p, {"created": created}) for p, created in done])
    emit([{"id": p.id, "created": created} for p, created in done])


@policies_group.command("delete")
@store_options
@click.argument("policy_id")
def delete(data_dir: Path | None, store: str | None, config_file: str | None, policy_id: str) -> None:
    """Delete the policy POLICY_ID (printed as it was)."""
    with _policies(data_dir, store, config_file) as opened:
        policy = opened.delete(policy_id)
    _audited(data_dir, store, config_file, [("policy.delete", policy, {})])
    emit(policy.to_json())
