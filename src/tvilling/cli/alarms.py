"""``tvilling alarms …``: list, acknowledge, clear and shelve alarms; check the configured alarm rules."""

from __future__ import annotations

from pathlib import Path

import click

from tvilling.cli.common import config_option, emit, errors, opened_platform, settings_from, store_options


@click.group("alarms")
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

    with opened_platform(data_dir, store, config_file) as p:
        svc = AlarmService(p.alarm_store, audit=p)
        items = svc.view(svc.list(state=state, twin=twin, severity=severity, rule=rule, limit=limit,
                                  grouped=not copies), grouped=not copies)
        if as_json:
            emit(items)
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
    """Acknowledge (``ack``) or clear an alarm and print it."""
    from tvilling.decisions.alarms import AlarmService

    with opened_platform(data_dir, store, config_file) as p:
        svc = AlarmService(p.alarm_store, audit=p)
        alarm = (svc.acknowledge if step == "ack" else svc.clear)(alarm_id, actor=actor, note=note)
        emit(alarm.to_json())


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
    from tvilling.decisions.alarms.shelves import parse_duration
    from tvilling.decisions.alarms.shelving import shelve_twin

    with opened_platform(data_dir, store, config_file) as p:
        seconds = parse_duration(duration, field="--for")
        emit(shelve_twin(AlarmService(p.alarm_store, audit=p), p.twins, twin_id, duration_s=seconds, reason=reason,
                         actor=actor, subtree=not no_subtree))


@alarms_group.command("unshelve")
@store_options
@click.argument("shelf_id")
@click.option("--actor", default="cli", show_default=True, help="Who ends the shelf.")
def alarms_unshelve(data_dir: Path | None, store: str | None, config_file: str | None, shelf_id: str,
                    actor: str) -> None:
    """End a shelf now: its alarms count again."""
    from tvilling.decisions.alarms import AlarmService

    with opened_platform(data_dir, store, config_file) as p:
        svc = AlarmService(p.alarm_store, audit=p)
        emit(svc.end_shelf(shelf_id, actor=actor).to_json(svc.clock()))


@alarms_group.command("shelves")
@store_options
@click.option("--active", is_flag=True, help="Only the shelves in effect now.")
def alarms_shelves(data_dir: Path | None, store: str | None, config_file: str | None, active: bool) -> None:
    """Shelves, newest first, as JSON."""
    from tvilling.decisions.alarms import AlarmService

    with opened_platform(data_dir, store, config_file) as p:
        svc = AlarmService(p.alarm_store, audit=p)
        emit([s.to_json(svc.clock()) for s in svc.shelves(active=True if active else None)])


@alarms_group.command("rules")
@config_option
def alarms_rules(config_file: str | None) -> None:
    """Check the alarm rules of the settings and print them as they will run."""
    import msgspec

    from tvilling.decisions.alarms import parse_rules

    settings = settings_from(config_file)
    with errors():
        rules = parse_rules(settings.alarm_rules)
    emit([msgspec.to_builtins(r) for r in rules])
    click.echo(f"{len(rules)} alarm rule(s) OK", err=True)
