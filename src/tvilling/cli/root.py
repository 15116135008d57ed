"""The root ``tvilling`` group; each capability's module adds its commands to it (see ``cli/__init__``)."""

from __future__ import annotations

import click

from tvilling import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tvilling")
def main() -> None:
    """Tvilling: live digital twins of physical assets."""

