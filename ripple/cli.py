"""The ``ripple`` command line.

Every command takes ``--db PATH`` (env ``RIPPLE_DB``, default ``./ripple.db``). Output is JSON (JSON lines for streams
of records). Bad input — a missing file, a file that is not ripple's, a newer schema, a bad option — is one line on
stderr and exit code 2, never a traceback; a failed ``verify`` exits 1.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import msgspec

from ripple.config import ConfiguredCommand
from ripple.core.validate import DEFAULT_MAX_VALUE_BYTES
from ripple.errors import RippleError
from ripple.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_QUEUE, MAX_BATCH_BODY_BYTES, MAX_BATCH_COMMANDS
from ripple.subscriptions.cursor import DEFAULT_MAX_BUFFER_BYTES, DEFAULT_MAX_BUFFER_EVENTS

if TYPE_CHECKING:
    from ripple.iii.rbac import FunctionFilter, RbacConfig, RbacPort

EXIT_FAULT = 1
EXIT_BAD_INPUT = 2


def file_only(db: str) -> None:
    """Commands that work on a SQLite file refuse a PostgreSQL URL with one clear line (docs/scaling.md)."""
    from ripple.store.postgres import is_postgres_url, redact

    if is_postgres_url(db):
        fail(f"{redact(db)}: this command works on SQLite files only; on PostgreSQL use ripple log/get/export, a "
             "live node's API, or PostgreSQL's own tools (docs/scaling.md)")


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    click.echo(f"ripple: {message}", err=True)
    sys.exit(code)


class RippleGroup(click.Group):
    """Turns every error into one line on stderr with the documented exit code."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = False, **extra: Any) -> Any:
        try:
            return super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(0)
        except click.UsageError as exc:
            hint = f" (see 'ripple {exc.ctx.command.name} --help')" if exc.ctx and exc.ctx.command.name else ""
            fail(f"{exc.format_message()}{hint}")
        except click.ClickException as exc:
            fail(exc.format_message())
        except click.Abort:
            fail("aborted", 130)
        except RippleError as exc:
            fail(exc.message)
        except sqlite3.Error as exc:
            fail(f"SQLite error: {exc}")
        except OSError as exc:
            fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        except BrokenPipeError:
            # The reader went away (`ripple log | head`): silence the final flush and exit quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)
        except KeyboardInterrupt:
            sys.exit(130)


@click.group(cls=RippleGroup)
@click.version_option(package_name="ripple")
def main() -> None:
    """ripple: an event-sourced reactive store in one SQLite file.

    \b
    ripple serve                         # serve ./ripple.db on http://127.0.0.1:8000
    ripple log --db app.db --after 10    # the log as JSON lines
    ripple verify --db app.db            # prove the file is sound
    """


db_option = click.option(
    "--db", "db", envvar="RIPPLE_DB", default="ripple.db", show_default=True, metavar="PATH",
    help="The ripple database file (env RIPPLE_DB).",
)
APP_HELP = "module:function, or path/to/file.py:function (a module file or a package's __init__.py; from anywhere)"
app_option = click.option(
    "--app", "app", default=None, metavar="MODULE:FUNCTION",
    help=f"Load user projections from setup(store): {APP_HELP}. Reactions are never run offline.",
)
KINDS = click.Choice(["state", "stream", "all"])


def write_lines(lines: Iterator[bytes], *, flush_each: bool = False) -> int:
    out = sys.stdout.buffer
    n = 0
    for line in lines:
        out.write(line + b"\n")
        n += 1
        if flush_each:
            out.flush()
    out.flush()
    return n


def progress_columns(unit: str) -> tuple[Any, ...]:
    """The bars' columns: label, bar, percentage, ``done/total``, a formatted rate and the ETA where the total is
    known; the count and the elapsed time where it is not (``None`` and ``?`` are never shown)."""
    from rich.progress import (
        BarColumn,
        ProgressColumn,
        Task,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task: Task) -> Text:
            done = f"{task.completed:,.0f}"
            return Text(f"{done}/{task.total:,.0f} {unit}" if task.total is not None else f"{done} {unit}",
                        style="progress.download")

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            # rich's own estimate needs two samples within its window; until then (and at the end of a short run)
            # the average over the elapsed time is the honest figure
            speed = task.finished_speed or task.speed
            if not speed and task.completed and task.elapsed:
                speed = task.completed / task.elapsed
            return Text(f"{speed:,.0f} {unit}/s" if speed else f"… {unit}/s", style="progress.data.speed")

    class Eta(ProgressColumn):
        """Time remaining where the total is known, else time elapsed."""

        def __init__(self) -> None:
            super().__init__()
            self.remaining, self.elapsed = TimeRemainingColumn(), TimeElapsedColumn()

        def render(self, task: Task) -> Text:
            if task.total is None:
                return self.elapsed.render(task)
            return Text("ETA ") + self.remaining.render(task)

    return (TextColumn("{task.description:<12}"), BarColumn(), TaskProgressColumn(), Count(), Rate(), Eta())


class Progress:
    """Progress bars on stderr for the long commands (import, verify, rebuild, replay): one helper for all.

    ``with Progress() as bars: advance = bars.task("import", total)``. Silent when stderr is not a terminal (rich
    honours ``FORCE_COLOR``); a ``total`` given as a function is only computed when the bars are shown, so a
    command pays for counting only when someone watches.
    """

    def __init__(self, unit: str = "ev") -> None:
        from rich.console import Console
        from rich.progress import Progress as Bars

        console = Console(stderr=True)
        self.shown = console.is_terminal
        self._bars = Bars(*progress_columns(unit), console=console, disable=not self.shown, transient=True)

    def task(self, label: str, total: int | Callable[[], int | None] | None = None) -> Callable[[int], None]:
        """A new bar; returns ``advance(n)``. When the work ends without an error, the bar is shown complete."""
        known = (total() if callable(total) else total) if self.shown else None
        task = self._bars.add_task(label, total=known)
        return lambda n: self._bars.advance(task, n)

    def __enter__(self) -> Progress:
        self._bars.start()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            for task in self._bars.tasks:
                if task.total is not None:
                    self._bars.update(task.id, completed=task.total)
            self._bars.refresh()
        self._bars.stop()


@contextlib.contextmanager
def tracked(label: str, total: int | Callable[[], int | None] | None = None) -> Iterator[Callable[[int], None]]:
    """One bar for the duration of the block: ``with tracked("verify", head) as advance: ...``."""
    with Progress() as bars:
        yield bars.task(label, total)


# ---- read-only commands ----------------------------------------------------------------------------------------


@main.command("log")
@db_option
@click.option("--after", type=click.IntRange(min=0), default=None,
              help="Only events after N (default: the whole log, from its earliest offset).")
@click.option("--scope", "scopes", multiple=True, help="Only these scopes (repeatable).")
@click.option("--key", "keys", multiple=True, help="Only these keys (repeatable).")
@click.option("--kind", type=KINDS, default="all", show_default=True)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they are committed.")
@click.option("--actor", default=None, metavar="NAME", help="Only events written with this token (meta.actor).")
def log_command(db: str, after: int | None, scopes: tuple[str, ...], keys: tuple[str, ...], kind: str,
                follow: bool, actor: str | None) -> None:
    """Print events as JSON lines.

    \b
    ripple log --db app.db --after 100 --scope todos
    ripple log --db app.db --follow        # tail a file a live server is writing
    ripple log --db app.db --actor ci-bot  # what the token ci-bot wrote
    """
    from ripple import offline
    from ripple.core.filter import Filter
    from ripple.store import retention, sql

    conn = offline.open_log_reader(db)
    f = Filter.of(kind, scopes, keys)  # type: ignore[arg-type]  # click.Choice checked it
    if after is None:
        after = retention.read_floor(conn).for_kind(f.kind) - 1
    try:
        offline.check_after(conn, after)  # beyond the head, even --follow would skip what is written up to it
        offline.check_filter(scopes, keys)
        while True:
            upto = sql.head(conn)
            write_lines(offline.event_lines(conn, f, after=after, upto=upto, actor=actor))
            if not follow:
                return
            after = upto
            time.sleep(0.2)  # polling a file that another process writes; there is no cross-process wake-up
    finally:
        conn.close()


@main.command("get")
@db_option
@click.argument("scope")
@click.argument("key", required=False)
@click.option("--at", type=click.IntRange(min=0), default=None, help="As of offset N (time travel).")
def get_command(db: str, scope: str, key: str | None, at: int | None) -> None:
    """Print a value (JSON), or every entry of a scope (JSON lines), now or as of offset N.

    \b
    ripple get --db app.db todos t1
    ripple get --db app.db todos --at 42
    """
    from ripple import offline

    conn = offline.open_log_reader(db)
    try:
        if key is None:
            write_lines(offline.scope_lines(conn, scope, at))
            return
        found, value = offline.get_value(conn, scope, key, at)
    finally:
        conn.close()
    if not found:
        fail(f"{scope}/{key}: no such key" + (f" at offset {at}" if at is not None else ""), EXIT_FAULT)
    sys.stdout.buffer.write(value + b"\n")


@main.command("export")
@db_option
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True)
def export_command(db: str, after: int) -> None:
    """Write every event as one JSON line (the fields of an event) to stdout.

    A compacted log starts with its floor and base ({"floor": ...} and {"base": ...} lines), which import reads back.

    \b
    ripple export --db app.db > events.jsonl
    """
    from ripple import offline

    conn = offline.open_log_reader(db)
    try:
        if after:  # 0: the whole log, a compacted one starting with its floor and base
            offline.check_after(conn, after)
        write_lines(offline.export_lines(conn, after=after))
    finally:
        conn.close()


@main.command("stats")
@db_option
def stats_command(db: str) -> None:
    """Print head, events per scope and op, file size, schema version, projections and reactions (JSON).

    \b
    ripple stats --db app.db
    """
    from ripple import offline

    conn = offline.open_readonly(db)
    try:
        click.echo(msgspec.json.format(msgspec.json.encode(offline.stats(conn, db))).decode())
    finally:
        conn.close()


@main.command("projections")
@db_option
@app_option
def projections_command(db: str, app: str | None) -> None:
    """List the projections recorded in the file (JSON): name, version, status, checkpoint and lag (head - checkpoint).

    Read-only; works beside a live server. --app adds the user's projections the file does not record yet
    (status not_built).

    \b
    ripple projections --db app.db
    ripple projections --db app.db --app examples.todo:setup
    """
    from ripple import offline

    projections = offline.load_projections(db, app)
    conn = offline.open_readonly(db)
    try:
        listing = offline.projection_list(conn, projections)
    finally:
        conn.close()
    click.echo(msgspec.json.format(msgspec.json.encode(listing)).decode())


@main.command("verify")
@db_option
@app_option
def verify_command(db: str, app: str | None) -> None:
    """Prove the file is sound; exit 1 naming the offsets of any fault.

    Checks: SQLite's integrity check, gapless offsets, each event's old_value against the previous new_value of its
    key, the state table against a fresh fold of the log, every projection against a fresh fold. Prints a summary
    and a state hash (sha256 of the canonical current state) to compare two files.

    \b
    ripple verify --db app.db
    ripple verify --db app.db --app examples.todo:setup
    """
    from ripple import offline
    from ripple.store import sql

    projections = offline.load_projections(db, app)
    conn = offline.open_readonly(db)
    try:
        skipped = offline.unregistered_projections(conn, projections)
        with tracked("verify", lambda: sql.head(conn)) as advance:
            report = offline.verify(conn, progress=advance, extra=offline.projection_faults(projections))
    finally:
        conn.close()
    report.checked.append("projections (" + ", ".join(p.name for p in projections) + ")")
    for note in report.notes:
        click.echo(f"note: {note}")
    if skipped:  # the file holds projections no loaded code registers: say so, without failing the verify
        names = ", ".join(skipped)
        report.checked.append(f"skipped projections not loaded (pass --app): {names}")
        click.echo(f"ripple: verify did not check projections {names}: no loaded code registers them "
                   "(pass --app module:setup)", err=True)
    for fault in report.faults:
        where = f"offset {fault.offset}: " if fault.offset is not None and str(fault.offset) not in fault.message \
            else ""
        click.echo(f"FAULT [{fault.check}] {where}{fault.message}")
    if report.faults:
        offsets = sorted({f.offset for f in report.faults if f.offset is not None})
        click.echo(f"verify failed: {len(report.faults)} fault(s)"
                   + (f" at offsets {', '.join(map(str, offsets[:20]))}" if offsets else ""))
        sys.exit(EXIT_FAULT)
    click.echo(f"ok: {report.events} events, head {report.head}, {report.keys} keys; "
               f"checked {', '.join(report.checked)}")
    click.echo(f"state-hash: {report.state_hash}")


# ---- commands that write ---------------------------------------------------------------------------------------


@main.command("import")
@db_option
@click.option("--append", is_flag=True, help="Continue the offsets of a non-empty database.")
@click.option("--input", "input_", type=click.File("rb"), default="-", help="Read from this file, not stdin.")
def import_command(db: str, append: bool, input_: Any) -> None:
    """Read events as JSON lines (as written by export) into a database, all or nothing.

    A missing file is created. A non-empty database is refused unless --append continues its offsets exactly.
    Needs the writer lock: refused while a server holds the file.

    \b
    ripple import --db copy.db < events.jsonl
    """
    file_only(db)
    from ripple import offline

    with tracked("import", lambda: offline.count_lines(input_)) as advance:
        n = offline.import_events(db, input_, append=append, progress=advance,
                                  after_import=projection_rebuilder(db, None))
    click.echo(msgspec.json.encode({"imported": n}).decode())


@main.command("replay")
@db_option
@click.option("--to", "to", type=click.IntRange(min=0), required=True, help="The last offset to keep.")
@click.option("--into", "into", required=True, metavar="OUT.db", help="The new database (must not exist).")
@app_option
def replay_command(db: str, to: int, into: str, app: str | None) -> None:
    """Write a new database holding the events up to offset N, with every projection rebuilt.

    The source is only read (it may be served at the same time).

    \b
    ripple replay --db app.db --to 500 --into app-at-500.db
    """
    file_only(db)
    from ripple import offline

    rebuilder = projection_rebuilder(into, app)
    with Progress() as bars:
        head = offline.replay(db, to, into, progress=bars.task("copy", to),
                              after_copy=lambda conn: rebuilder(conn, bars.task("projections", to)))
    click.echo(msgspec.json.encode({"into": into, "head": head}).decode())


@main.command("rebuild")
@db_option
@click.argument("name", required=False)
@app_option
def rebuild_command(db: str, name: str | None, app: str | None) -> None:
    """Rebuild one projection (or all) from offset 0, with a progress bar.

    Needs the writer lock: a live server rebuilds through POST /v1/projections/{name}/rebuild instead.

    \b
    ripple rebuild --db app.db metrics
    """
    file_only(db)
    from ripple import offline
    from ripple.store import sql

    def head() -> int | None:
        if not Path(db).exists():
            return None
        conn = offline.open_readonly(db)
        try:
            return sql.head(conn)
        finally:
            conn.close()

    with tracked("rebuild", head) as advance:
        rebuilt = offline.rebuild_projections(db, name, app, advance)
    click.echo(msgspec.json.encode({"rebuilt": rebuilt}).decode())


@main.command("compact")
@db_option
@click.option("--before", "before", type=int, required=True, metavar="N",
              help="Remove the events with offsets below N (1..head), after folding them into the base snapshot.")
@click.option("--force", is_flag=True,
              help="Compact even past durable reaction cursors and projection checkpoints (named in the refusal).")
@app_option
def compact_command(db: str, before: int, force: bool, app: str | None) -> None:
    """Remove the log below offset N, keeping the state as of N-1 as a base snapshot; then give the space back.

    Time travel, verify, replay, export and projection rebuilds keep working from the base plus the events left;
    `earliest` moves to N. Refused while a durable reaction or projection still needs those events (--force
    overrides: those projections are rebuilt, those reactions go on from N). A file created before incremental
    auto-vacuum is converted with one full VACUUM. Needs the writer lock (a live server compacts with
    `ripple serve --retain-*`).

    \b
    ripple compact --db app.db --before 1000000
    """
    file_only(db)
    from ripple import maintenance, offline

    projections = offline.load_projections(db, app)
    with tracked("compact", None) as advance:
        report = maintenance.compact_file(db, before, force=force, projections=projections, progress=advance)
    click.echo(msgspec.json.encode(report).decode())


@main.command("backup")
@db_option
@click.argument("out", required=False, metavar="[OUT.db]")
@click.option("--to", "folder", metavar="DIR", help="Write a time-stamped copy into DIR instead of OUT.db.")
@click.option("--keep", type=click.IntRange(min=1), default=None, metavar="N",
              help="With --to: keep only the newest N backups of this database in DIR.")
@click.option("--method", type=click.Choice(["backup", "vacuum"]), default="backup", show_default=True,
              help="SQLite's online backup API, or VACUUM INTO (a defragmented copy).")
def backup_command(db: str, out: str | None, folder: str | None, keep: int | None, method: str) -> None:
    """Copy a database, live or not, to a new file: one consistent snapshot, writes never stop.

    OUT.db must not exist. Copying the .db file alone (cp) while a server runs loses the commits still in its -wal
    file: use this instead.

    \b
    ripple backup --db app.db app-backup.db
    ripple backup --db app.db --to backups/ --keep 24     # e.g. hourly from cron
    """
    file_only(db)
    from ripple import maintenance

    chosen: maintenance.BackupMethod = "vacuum" if method == "vacuum" else "backup"
    if (out is None) == (folder is None):
        raise click.UsageError("give OUT.db or --to DIR (one of them)")
    if keep is not None and folder is None:
        raise click.UsageError("--keep goes with --to DIR")
    if folder is not None:
        report = maintenance.rotate(db, folder, keep or 1_000_000, method=chosen)
    else:
        assert out is not None
        report = maintenance.backup(db, out, method=chosen)
    click.echo(msgspec.json.encode(report).decode())


@main.command("restore")
@click.argument("backup", metavar="BACKUP.db")
@click.option("--db", "db", required=True, metavar="PATH", help="The new database file (must not exist).")
def restore_command(backup: str, db: str) -> None:
    """Copy a backup to a new database file and verify it; the file appears only if it verifies.

    \b
    ripple restore backups/app-20250101T120000Z.db --db app.db
    """
    from ripple import maintenance

    with tracked("verify", None) as advance:
        report = maintenance.restore(backup, db, progress=advance)
    if not report.ok:
        for fault in report.faults:
            click.echo(f"FAULT [{fault.check}] {fault.message}")
        fail(f"{backup} does not verify ({len(report.faults)} fault(s)); {db} was not created", EXIT_FAULT)
    click.echo(msgspec.json.encode({"restored": db, "head": report.head, "events": report.events,
                                    "keys": report.keys, "state_hash": report.state_hash}).decode())


# ---- serve -----------------------------------------------------------------------------------------------------


@main.command("serve", cls=ConfiguredCommand)
@click.argument("db_arg", metavar="[DB]", required=False, type=click.Path(dir_okay=False))
@click.option("--db", "db_opt", envvar="RIPPLE_DB", type=click.Path(dir_okay=False), metavar="PATH",
              help="The ripple database file (default ./ripple.db).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--durability", type=click.Choice(["full", "normal"]), default="full", show_default=True)
@click.option("--app", "app_spec", metavar="MODULE:SETUP",
              help=f"User code (reactions, projections, routes): {APP_HELP}.")
@click.option("--access-log", is_flag=True, help="Log every request: one line each, with its request id.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Log lines on stderr as text or as one JSON object each.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="The least severe log records written.")
@click.option("--metrics/--no-metrics", default=True, show_default=True,
              help="Serve GET /metrics (Prometheus text format) and count requests.")
@click.option("--proxy-headers", is_flag=True,
              help="Behind a reverse proxy: take the client address and scheme from X-Forwarded-For/-Proto.")
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True, metavar="IPS",
              help="With --proxy-headers: the proxies trusted to set them (comma-separated, or *).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_BODY_BYTES, show_default=True,
              help="Largest request body (413 beyond); POST /v1/batch has its own limit.")
@click.option("--max-batch-body-bytes", type=click.IntRange(min=1), default=MAX_BATCH_BODY_BYTES,
              show_default=True, help="Largest POST /v1/batch body.")
@click.option("--max-batch-commands", type=click.IntRange(1, MAX_BATCH_COMMANDS), default=MAX_BATCH_COMMANDS,
              show_default=True, help="Most commands in one batch.")
@click.option("--max-value-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_VALUE_BYTES, show_default=True,
              help="Largest value (compact JSON) a write may store.")
@click.option("--max-queue", type=click.IntRange(min=1), default=DEFAULT_MAX_QUEUE, show_default=True,
              help="Writes waiting for the writer before new ones get 503 with Retry-After.")
@click.option("--subscriber-buffer-events", type=click.IntRange(min=1), default=DEFAULT_MAX_BUFFER_EVENTS,
              show_default=True, help="A subscriber's live buffer, in events; beyond, it catches up from the log.")
@click.option("--subscriber-buffer-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_BUFFER_BYTES,
              show_default=True, help="A subscriber's live buffer, in bytes of JSON.")
@click.option("--ws-ping-interval", type=click.FloatRange(min=0.1), default=20.0, show_default=True,
              help="WebSocket keepalive ping interval, seconds.")
@click.option("--ws-ping-timeout", type=click.FloatRange(min=0.1), default=20.0, show_default=True,
              help="Close a WebSocket client that does not answer a ping within this many seconds.")
@click.option("--heartbeat", type=click.FloatRange(min=0.1), default=15.0, show_default=True,
              help="Seconds between subscription heartbeat frames.")
@click.option("--loop", type=click.Choice(["auto", "uvloop", "asyncio"]), default="auto", show_default=True,
              help="Event loop: uvloop when installed (auto), or asyncio's own.")
@click.option("--http", type=click.Choice(["auto", "httptools", "h11"]), default="auto", show_default=True,
              help="HTTP parser: httptools when installed (auto), or the pure-Python h11.")
@click.option("--iii", is_flag=True, help="Also listen for iii workers (docs/iii.md).")
@click.option("--iii-strict", is_flag=True, help="Turn off the iii compatibility rules R-3..R-5.")
@click.option("--iii-host", default="127.0.0.1", show_default=True)
@click.option("--iii-worker-port", default=49134, show_default=True, type=click.IntRange(0, 65535))
@click.option("--iii-http-port", default=3111, show_default=True, type=click.IntRange(0, 65535))
@click.option("--iii-stream-port", default=3112, show_default=True, type=click.IntRange(0, 65535))
@click.option("--iii-rbac-port", type=click.IntRange(0, 65535), default=None,
              help="Also listen for workers on an RBAC port (iii's second worker manager; off unless given).")
@click.option("--iii-rbac-host", default=None, metavar="HOST", help="The RBAC port's interface (default --iii-host).")
@click.option("--iii-rbac-auth-function", metavar="FUNCTION_ID",
              help="A worker function that admits each RBAC connection and says what it may do.")
@click.option("--iii-rbac-expose", multiple=True, metavar="FILTER",
              help='A function RBAC sessions may call: match("api::*") or {"metadata": {"public": true}} '
                   "(repeatable).")
@click.option("--iii-rbac-middleware", metavar="FUNCTION_ID",
              help="A worker function that receives every call from the RBAC port instead of its target.")
@click.option("--iii-rbac-on-function-registration", metavar="FUNCTION_ID",
              help="A hook that maps or denies each function an RBAC session registers.")
@click.option("--iii-rbac-on-trigger-registration", metavar="FUNCTION_ID",
              help="A hook that maps or denies each trigger an RBAC session registers.")
@click.option("--iii-rbac-on-trigger-type-registration", metavar="FUNCTION_ID",
              help="A hook that maps or denies each trigger type an RBAC session registers.")
@click.option("--auth", is_flag=True, help="Require a token on every request (see 'ripple token create').")
@click.option("--insecure-no-auth", is_flag=True,
              help="Allow a non-loopback --host, --iii-host or --iii-rbac-host without --auth.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer to this Host name (repeatable; '*' turns the check off).")
@click.option("--allow-origin", "allow_origins", multiple=True, metavar="ORIGIN",
              help="Let pages of this origin open WebSockets and write (repeatable), e.g. https://app.example.")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="Answer CORS requests from this origin (repeatable; implies --allow-origin).")
@click.option("--header-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds a request head (line and headers) may take to arrive.")
@click.option("--body-timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds a request body may take to arrive.")
@click.option("--keep-alive-timeout", type=click.FloatRange(min=1), default=5.0, show_default=True,
              help="Close a connection idle this many seconds between requests.")
@click.option("--max-connections", type=click.IntRange(min=1), default=None,
              help="Answer 503 to connections beyond this many (default 10000, lowered to fit the fd limit).")
@click.option("--retain-age", metavar="AGE", help="Compact events older than AGE (e.g. 90d, 12h).")
@click.option("--retain-size", metavar="SIZE", help="Compact the oldest events while the file uses more than SIZE "
              "(e.g. 2GB, 500MiB).")
@click.option("--retain-stream-age", metavar="AGE", help="Remove stream events older than AGE (state history stays).")
@click.option("--retain-every", type=click.FloatRange(min=1), default=60.0, show_default=True, metavar="SECONDS",
              help="How often the retention policy runs.")
def serve_command(db_arg: str | None, db_opt: str | None, host: str, port: int, durability: str,
                  app_spec: str | None, access_log: bool, log_format: str, log_level: str, metrics: bool,
                  proxy_headers: bool, forwarded_allow_ips: str, max_body_bytes: int, max_batch_body_bytes: int,
                  max_batch_commands: int, max_value_bytes: int, max_queue: int, subscriber_buffer_events: int,
                  subscriber_buffer_bytes: int, ws_ping_interval: float, ws_ping_timeout: float,
                  heartbeat: float, loop: str, http: str, iii: bool, iii_strict: bool, iii_host: str,
                  iii_worker_port: int, iii_http_port: int, iii_stream_port: int, iii_rbac_port: int | None,
                  iii_rbac_host: str | None, iii_rbac_auth_function: str | None, iii_rbac_expose: tuple[str, ...],
                  iii_rbac_middleware: str | None, iii_rbac_on_function_registration: str | None,
                  iii_rbac_on_trigger_registration: str | None, iii_rbac_on_trigger_type_registration: str | None,
                  auth: bool, insecure_no_auth: bool,
                  allow_hosts: tuple[str, ...], allow_origins: tuple[str, ...], cors_origins: tuple[str, ...],
                  header_timeout: float, body_timeout: float, keep_alive_timeout: float,
                  max_connections: int | None, retain_age: str | None, retain_size: str | None,
                  retain_stream_age: str | None, retain_every: float) -> None:
    """Serve a database over HTTP and WebSocket (default ./ripple.db on 127.0.0.1:8000).

    Every option can also be set by its environment variable (shown below) or in a TOML file (--config);
    'ripple config' prints what a serve would use, and where each value came from. A non-loopback --host needs
    --auth (or --insecure-no-auth): see docs/security.md.

    \b
    ripple serve
    ripple serve app.db --port 9000
    ripple serve --app examples.todo:setup              # from the checkout root
    ripple serve --app path/to/examples/todo/__init__.py:setup   # from anywhere
    RIPPLE_PORT=9000 ripple serve --config ripple.toml
    ripple serve app.db --host 0.0.0.0 --auth --allow-host db.example.com
    """
    from ripple.http.connections import ConnectionLimits
    from ripple.http.serve import IiiOptions, LogOptions, ServeOptions, ServerLimits, run
    from ripple.iii.rbac import RbacConfig
    from ripple.store.retention import RetentionPolicy, parse_age, parse_size

    if db_arg and db_opt and db_arg != db_opt:
        raise click.UsageError(f"two databases given: {db_arg} and --db {db_opt}")
    rbac = rbac_port(iii, iii_rbac_port, iii_rbac_host, RbacConfig(
        iii_rbac_auth_function, expose_filters(iii_rbac_expose), iii_rbac_middleware,
        iii_rbac_on_function_registration, iii_rbac_on_trigger_registration, iii_rbac_on_trigger_type_registration))
    iii_options = IiiOptions(iii, iii_strict, iii_host, iii_worker_port, iii_http_port, iii_stream_port, rbac)
    policy = RetentionPolicy(
        max_age_ms=None if retain_age is None else parse_age(retain_age),
        max_bytes=None if retain_size is None else parse_size(retain_size),
        stream_max_age_ms=None if retain_stream_age is None else parse_age(retain_stream_age),
        interval=retain_every,
    )
    limits = ServerLimits(max_body_bytes, max_batch_body_bytes, max_batch_commands, max_value_bytes, max_queue,
                    subscriber_buffer_events, subscriber_buffer_bytes)
    logs = LogOptions(log_format, log_level)  # type: ignore[arg-type]  # click.Choice checked them
    run(ServeOptions(db=db_arg or db_opt or "ripple.db", host=host, port=port,
                     durability="normal" if durability == "normal" else "full", app=app_spec,
                     access_log=access_log, iii=iii_options, ws_ping_interval=ws_ping_interval,
                     ws_ping_timeout=ws_ping_timeout, heartbeat_seconds=heartbeat, logs=logs, metrics=metrics,
                     proxy_headers=proxy_headers, forwarded_allow_ips=forwarded_allow_ips, limits=limits,
                     auth=auth, insecure_no_auth=insecure_no_auth, allow_hosts=allow_hosts,
                     allow_origins=allow_origins, cors_origins=cors_origins,
                     connections=ConnectionLimits(header_timeout, body_timeout, keep_alive_timeout, max_connections),
                     retention=policy if policy.enabled else None,
                     loop=loop, http=http))  # type: ignore[arg-type]  # click.Choice checked the values


def expose_filters(texts: tuple[str, ...]) -> tuple[FunctionFilter, ...]:
    from ripple.iii.rbac import parse_filter

    try:
        return tuple(parse_filter(text) for text in texts)
    except ValueError as exc:
        raise click.UsageError(f"--iii-rbac-expose: {exc}") from None


def rbac_port(iii: bool, port: int | None, host: str | None, config: RbacConfig) -> RbacPort | None:
    """The RBAC worker port, when ``--iii-rbac-port`` is given (its rules mean nothing without it)."""
    from ripple.iii.rbac import RbacConfig, RbacPort

    if port is None:
        if config != RbacConfig() or host is not None:
            raise click.UsageError("the --iii-rbac-* options configure the RBAC port: add --iii-rbac-port")
        return None
    if not iii:
        raise click.UsageError("--iii-rbac-port is an iii port: add --iii")
    return RbacPort(port, config, host)


@main.command("config", context_settings={"ignore_unknown_options": True})
@click.option("--format", "fmt", type=click.Choice(["json", "toml"]), default="json", show_default=True,
              help="JSON (key, value, source, env for each setting), or a TOML file to start from.")
@click.argument("serve_args", nargs=-1, type=click.UNPROCESSED, metavar="[--config FILE] [SERVE OPTIONS]...")
def config_command(fmt: str, serve_args: tuple[str, ...]) -> None:
    """Print the configuration 'ripple serve' would run with, and where each value comes from.

    Sources, by precedence: flag > env (RIPPLE_*) > file (--config FILE or RIPPLE_CONFIG) > default. Secrets are
    printed as <redacted>. Bad configuration is one line and exit 2, as it is for serve.

    \b
    ripple config
    ripple config --config ripple.toml --port 9000
    ripple config --format toml > ripple.toml
    """
    from ripple.config import as_toml, effective

    config = effective(serve_command, serve_args, parent=click.get_current_context())
    if fmt == "toml":
        click.echo(as_toml(config), nl=False)
    else:
        click.echo(msgspec.json.format(msgspec.json.encode(config)).decode())


# ---- tokens ----------------------------------------------------------------------------------------------------


@main.group("token")
def token_group() -> None:
    """Create, list and revoke access tokens (for ripple serve --auth); they work beside a live server.

    \b
    ripple token create --db app.db --name web --allow 'todos:rw' --allow 'todo-metrics:r'
    ripple token list --db app.db
    ripple token revoke --db app.db web
    """


@token_group.command("create")
@db_option
@click.option("--name", required=True, help="The token's name: the actor its writes carry (never reused).")
@click.option("--allow", "scopes", multiple=True, metavar="PATTERN:r|rw",
              help="A scope grant, e.g. 'todos:rw' or 'todos*:r' (repeatable; globs: * ? [seq]).")
@click.option("--stream", "streams", multiple=True, metavar="PATTERN:r|rw",
              help="A stream grant, e.g. 'live:r' (repeatable).")
@click.option("--admin", is_flag=True, help="Everything: the whole log, projections, rebuilds, health details.")
@click.option("--worker", is_flag=True,
              help="May connect to the iii worker port (its calls are checked against its grants).")
@click.option("--expires", default=None, metavar="DURATION", help="Expire after e.g. 30d, 12h, 15m (default never).")
def token_create(db: str, name: str, scopes: tuple[str, ...], streams: tuple[str, ...], admin: bool, worker: bool,
                 expires: str | None) -> None:
    """Create a token and print it once (only its SHA-256 is stored: it cannot be shown again).

    \b
    TOKEN=$(ripple token create --db app.db --name web --allow 'todos:rw')
    curl -H "Authorization: Bearer $TOKEN" localhost:8000/v1/state/todos
    """
    from ripple import offline
    from ripple.auth.tokens import create_token, parse_duration_ms

    expires_in = None if expires is None else parse_duration_ms(expires)
    conn = offline.open_for_tokens(db)
    try:
        text, _ = create_token(conn, name, scopes=scopes, streams=streams, admin=admin, worker=worker,
                               expires_in_ms=expires_in)
    finally:
        conn.close()
    click.echo(text)
    click.echo(f"ripple: token {name!r} created; store it now: it cannot be shown again", err=True)


@token_group.command("list")
@db_option
def token_list(db: str) -> None:
    """Print every token as a JSON line: name, grants, times and status (never the token or its hash).

    \b
    ripple token list --db app.db
    """
    from ripple import offline
    from ripple.auth.tokens import read_tokens

    conn = offline.open_log_reader(db)
    try:
        records = list(read_tokens(conn).values())
    finally:
        conn.close()
    write_lines(msgspec.json.encode(r) for r in records)


@token_group.command("revoke")
@db_option
@click.argument("name")
def token_revoke(db: str, name: str) -> None:
    """Revoke a token: a live server refuses it within a second and closes its WebSocket sessions.

    \b
    ripple token revoke --db app.db web
    """
    from ripple import offline
    from ripple.auth.tokens import revoke_token

    conn = offline.open_for_tokens(db)
    try:
        record = revoke_token(conn, name)
    finally:
        conn.close()
    click.echo(msgspec.json.encode(record).decode())


# ---- projections ----------------------------------------------------------------------------------------------


def projection_rebuilder(db: str, app: str | None) -> Callable[..., None]:
    """Rebuild every projection inside the transaction that wrote a new log (import, replay).

    The user's code is loaded now, before any file is written: a broken --app changes nothing."""
    from ripple import offline

    projections = offline.load_projections(db, app)

    def rebuild(conn: Any, progress: Callable[[int], None] | None = None) -> None:
        offline.rebuild_all(conn, projections, progress)

    return rebuild
