"""``tvilling audit …``: the tamper-evident audit chain of a store (``--data-dir`` or ``--store``).

``verify`` checks every entry and seal (exit 0 and a summary when intact, exit 1 naming the first
bad entry), ``list`` shows entries filtered by actor, action and target, ``seal`` seals the head
now, ``key`` prints the public sealing key to keep elsewhere (``verify --public-key``). They open
only the audit tables, so they work beside a running server (SQLite WAL admits readers).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tvilling.cli.common import emit, errors, settings_from, store_options
from tvilling.core.errors import NotFound

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from tvilling.backend.audit import AuditStore


@contextmanager
def opened_audit(data_dir: Path | None, store: str | None, config_file: str | None) -> Iterator[AuditStore]:
    """The audit store the options name, closed on the way out; errors as ``error: …``, exit 1."""
    from tvilling.backend.stores import DB_FILE, open_store

    settings = settings_from(config_file, data_dir=data_dir, store=store)
    with errors():
        if settings.store is None and not (settings.data_dir / DB_FILE).exists():
            raise NotFound(f"there is no embedded store in {settings.data_dir} (--data-dir or --store)",
                           path=str(settings.data_dir))
        audit: AuditStore = open_store("audit", settings.store, data_dir=settings.data_dir,
                                       schema=settings.pg_schema)
        try:
            yield audit
        finally:
            audit.close()


def _public_key(path: str) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    data = Path(path).read_bytes()
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise click.BadParameter(f"{path} is not a PEM Ed25519 key", param_hint="--public-key") from None
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise click.BadParameter(f"{path} is not an Ed25519 key", param_hint="--public-key")
    return key


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit chain: verify it, list entries, seal it, show its public key."""


@audit_group.command("verify")
@store_options
@click.option("--public-key", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="PEM public key the seals must be signed with (default: the store's own key file).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
def verify_command(data_dir: Path | None, store: str | None, config_file: str | None, public_key: str | None,
                   as_json: bool) -> None:
    """Verify every audit entry and seal: exit 0 when intact, 1 naming the first bad entry."""
    pinned = None if public_key is None else _public_key(public_key)
    with opened_audit(data_dir, store, config_file) as audit:
        report = audit.verify(public_key=pinned)
    if as_json:
        emit(report.to_json())
    else:
        click.echo(report.summary())
        for p in report.problems[1:]:
            click.echo(f"  also: entry {p.seq}: {p.kind}: {p.reason}")
    if not report.ok:
        sys.exit(1)


@audit_group.command("list")
@store_options
@click.option("--actor", default=None, help="Only this actor's entries.")
@click.option("--action", default=None, help="Only this action (e.g. twin.patch, telemetry.batch).")
@click.option("--target", default=None, help="Only this target (e.g. twin:line-1-m01).")
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True,
              help="Entries after this sequence number.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def list_command(data_dir: Path | None, store: str | None, config_file: str | None, actor: str | None,
                 action: str | None, target: str | None, after: int, limit: int, as_json: bool) -> None:
    """List audit entries by sequence number, filtered by actor, action and target."""
    with opened_audit(data_dir, store, config_file) as audit:
        items = audit.list(actor=actor, action=action, target=target, after=after, limit=limit)
    if as_json:
        emit([e.to_json() for e in items])
        return
    for e in items:
        mark = "" if e.outcome == "ok" else f" [{e.outcome}]"
        click.echo(f"#{e.seq} {e.time} {e.actor} ({e.actor_kind}) {e.action} {e.target}{mark}")
    if not items:
        click.echo("no audit entries", err=True)


@audit_group.command("seal")
@store_options
def seal_command(data_dir: Path | None, store: str | None, config_file: str | None) -> None:
    """Seal the head of the audit chain now, with the store's signing key."""
    with opened_audit(data_dir, store, config_file) as audit:
        seal = audit.seal()
    if seal is None:
        click.echo("nothing to seal: the head is sealed already (or the chain is empty)")
    else:
        click.echo(f"sealed entries up to {seal.upto_seq} with key {seal.key_id}")


@audit_group.command("key")
@store_options
def key_command(data_dir: Path | None, store: str | None, config_file: str | None) -> None:
    """Print the audit chain's public sealing key (PEM) to keep elsewhere for verify --public-key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from tvilling.security.audit import key_id

    with opened_audit(data_dir, store, config_file) as audit:
        key = audit.public_key()
        if key is None:
            raise NotFound("there is no audit signing key yet: it is made with the first seal "
                           "(tvilling audit seal)")
    click.echo(f"# key id {key_id(key)}", err=True)
    click.echo(key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode(), nl=False)
