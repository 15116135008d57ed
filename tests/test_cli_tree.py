"""The command tree of ``tvilling``: exactly the recorded commands, each with a working ``--help``."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from tvilling.cli import main

#: every command path, as recorded before ``cli.py`` became the ``cli/`` package (issue 11); a new command
#: is added here on purpose, a lost one fails
COMMANDS = {
    "alarms", "alarms ack", "alarms clear", "alarms list", "alarms rules", "alarms shelve", "alarms shelves",
    "alarms unshelve",
    "analytics", "analytics backtest", "analytics family-train", "analytics forecast", "analytics list",
    "analytics promote", "analytics train",
    "audit", "audit key", "audit list", "audit seal", "audit verify",
    "dead-letters", "demo",
    "devices", "devices add", "devices init", "devices list", "devices remove", "devices server",
    "eval", "eval cmapss", "eval jobshop", "eval maintenance", "eval nab", "eval skab",
    "maintenance", "maintenance approve", "maintenance cancel", "maintenance done", "maintenance list",
    "maintenance plan", "maintenance propose", "maintenance record", "maintenance schedule", "maintenance show",
    "maintenance start",
    "models", "models decommission", "models get", "models import", "models list",
    "plant",
    "production", "production orders", "production orders add", "production orders cancel", "production orders list",
    "production plan", "production replan", "production show",
    "replay", "serve",
    "sim", "sim calibrate", "sim compare", "sim fmu", "sim list", "sim run", "sim score", "sim show",
    "tokens", "tokens create", "tokens list", "tokens revoke",
    "policies", "policies list", "policies put", "policies delete",
    "twins", "twins create", "twins delete", "twins get", "twins history", "twins import", "twins migrate",
    "twins patch", "twins query", "twins query-help", "twins relate",
}


def _paths(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if path:
        yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _paths(sub, (*path, name))


def test_the_tree_holds_exactly_the_recorded_commands() -> None:
    found = {" ".join(p) for p in _paths(main)}
    assert found - COMMANDS == set(), "new commands: add them to COMMANDS"
    assert COMMANDS - found == set(), "commands lost"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_answers_help(path: str) -> None:
    result = CliRunner().invoke(main, [*path.split(), "--help"], prog_name="tvilling")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: tvilling {path} ")
    command = main
    for part in path.split():
        assert isinstance(command, click.Group)
        command = command.commands[part]
    first_line = " ".join((command.help or "").split("\n\n")[0].split())
    assert first_line and first_line in " ".join(result.output.split())  # the docstring is the help text


def test_an_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["twins", "nonesuch"], prog_name="tvilling")
    assert result.exit_code == 2
    assert "No such command 'nonesuch'" in result.output
