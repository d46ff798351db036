"""The ``ripple`` command line (DESIGN §10)."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="ripple")
def main() -> None:
    """ripple: an event-sourced reactive store in one SQLite file."""
