"""The ``ripple`` command line (DESIGN §10)."""

from __future__ import annotations

import sys

import click


@click.group()
@click.version_option(package_name="ripple")
def main() -> None:
    """ripple: an event-sourced reactive store in one SQLite file."""


# ---- serve -------------------------------------------------------------------------------------------------------


@main.command()
@click.argument("db_arg", metavar="[DB]", required=False, type=click.Path(dir_okay=False))
@click.option("--db", "db_opt", envvar="RIPPLE_DB", type=click.Path(dir_okay=False), help="Database file.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--durability", type=click.Choice(["full", "normal"]), default="full", show_default=True)
@click.option("--app", "app_spec", metavar="MODULE:SETUP", help="User code: reactions, projections, routes.")
@click.option("--access-log", is_flag=True, help="Log every request.")
@click.option("--iii", is_flag=True, help="Also listen for iii workers (DESIGN §9).")
@click.option("--iii-strict", is_flag=True, help="Turn off the iii compatibility rules R-3..R-5.")
@click.option("--iii-host", default="127.0.0.1", show_default=True)
@click.option("--iii-worker-port", default=49134, show_default=True, type=click.IntRange(0, 65535))
@click.option("--iii-http-port", default=3111, show_default=True, type=click.IntRange(0, 65535))
@click.option("--iii-stream-port", default=3112, show_default=True, type=click.IntRange(0, 65535))
def serve(
    db_arg: str | None,
    db_opt: str | None,
    host: str,
    port: int,
    durability: str,
    app_spec: str | None,
    access_log: bool,
    iii: bool,
    iii_strict: bool,
    iii_host: str,
    iii_worker_port: int,
    iii_http_port: int,
    iii_stream_port: int,
) -> None:
    """Serve a database over HTTP and WebSocket (default ./ripple.db on 127.0.0.1:8000).

    \b
    ripple serve
    ripple serve app.db --port 9000
    ripple serve --app examples.todo:setup
    """
    from ripple.errors import DatabaseFileError, RippleError
    from ripple.http.serve import IiiOptions, ServeOptions, run

    if db_arg and db_opt and db_arg != db_opt:
        raise click.UsageError(f"two databases given: {db_arg} and --db {db_opt}")
    iii_options = IiiOptions(iii, iii_strict, iii_host, iii_worker_port, iii_http_port, iii_stream_port)
    options = ServeOptions(
        db=db_arg or db_opt or "ripple.db",
        host=host,
        port=port,
        durability="normal" if durability == "normal" else "full",
        app=app_spec,
        access_log=access_log,
        iii=iii_options,
    )
    try:
        run(options)
    except (DatabaseFileError, RippleError) as exc:
        click.echo(f"ripple: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # e.g. the port is taken
        click.echo(f"ripple: {exc}", err=True)
        sys.exit(2)
