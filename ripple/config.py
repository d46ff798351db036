"""Configuration of ``ripple serve``: every option as a flag, a ``RIPPLE_*`` environment variable and a TOML key.

One table, derived from the command's click options, so an option added to ``serve`` is configurable everywhere at
once: the option ``--ws-ping-interval`` is the environment variable ``RIPPLE_WS_PING_INTERVAL`` and the TOML key
``ws-ping-interval``. One precedence rule: **flag > environment > file > default** (click's own order, with the file
as its ``default_map``). The file is named by ``--config FILE`` or ``RIPPLE_CONFIG``.

Bad configuration is one line and exit 2, naming the key and where it came from: an unknown key in the file, a value
of the wrong type (``port = "80"`` is a string, not an integer; ``iii = 1`` is not a boolean), a value out of range,
an environment variable that does not parse, a file that cannot be read or is not TOML. ``RIPPLE_*`` variables that
name no option are ignored (the test suite and other tools use some).

:func:`effective` is what ``ripple config`` prints: each key's value and its source, secrets redacted.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Sequence
from typing import Any, Literal

import click
import msgspec
from click.core import ParameterSource

ENV_PREFIX = "RIPPLE_"
CONFIG_KEY = "config"
# Keys whose values are never printed (by ``ripple config``) or logged.
SECRET = re.compile(r"token|secret|password|passwd|credential|api[-_]?key|private[-_]?key", re.IGNORECASE)
REDACTED = "<redacted>"

Source = Literal["flag", "env", "file", "default"]
_SOURCES: dict[ParameterSource | None, Source] = {
    ParameterSource.COMMANDLINE: "flag",
    ParameterSource.ENVIRONMENT: "env",
    ParameterSource.DEFAULT_MAP: "file",
    ParameterSource.DEFAULT: "default",
    None: "default",
}


class Setting(msgspec.Struct):
    """One configuration key as ``ripple config`` prints it."""

    key: str
    value: Any
    source: Source
    env: str


class Effective(msgspec.Struct):
    config_file: str | None
    settings: list[Setting]


def key_of(option: click.Option) -> str:
    """The TOML key of an option: its long flag without the dashes (``--iii-worker-port`` → ``iii-worker-port``)."""
    longs = [o for o in option.opts if o.startswith("--")]
    return (max(longs, key=len) if longs else option.opts[0]).lstrip("-")


def env_of(key: str) -> str:
    return ENV_PREFIX + key.upper().replace("-", "_")


def options(command: click.Command) -> list[click.Option]:
    """The configurable options of ``command`` (everything but ``--help`` and ``--config``)."""
    return [p for p in command.params if isinstance(p, click.Option) and p.name and key_of(p) != CONFIG_KEY
            and not (p.is_flag and p.expose_value is False)]


def env_name(option: click.Option) -> str:
    return option.envvar if isinstance(option.envvar, str) else env_of(key_of(option))


def is_secret(key: str) -> bool:
    return SECRET.search(key) is not None


class ConfiguredCommand(click.Command):
    """A click command whose options are also read from ``RIPPLE_*`` variables and a ``--config`` TOML file."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for option in options(self):
            if option.envvar is None:
                option.envvar = env_of(key_of(option))
            option.show_envvar = True
        self.params.append(click.Option(
            ["--config"], envvar=env_of(CONFIG_KEY), show_envvar=True, metavar="FILE", is_eager=True,
            expose_value=False, callback=_load_file,
            help="A TOML file of options (keys as the long flags without dashes: port = 9000). "
                 "Precedence: flag > environment > file > default.",
        ))

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.BadParameter as exc:
            raise click.UsageError(_with_source(exc, ctx), ctx) from None


def _with_source(exc: click.BadParameter, ctx: click.Context) -> str:
    """Name where a bad value came from: click says only "Invalid value for '--port'"."""
    param = exc.param
    if not isinstance(param, click.Option) or param.name is None:
        return exc.format_message()
    source = ctx.get_parameter_source(param.name)
    if source == ParameterSource.ENVIRONMENT:
        return f"invalid value in the environment variable {env_name(param)}: {exc.message}"
    if source == ParameterSource.DEFAULT_MAP:
        return f"invalid value for {key_of(param)!r} in {ctx.meta.get('ripple.config_file')}: {exc.message}"
    return exc.format_message()


def _load_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--config FILE``: read and check the file, then hand it to click as the defaults of the other options."""
    if not value:
        return
    try:
        with open(value, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise click.UsageError(f"cannot read the config file {value}: {exc.strerror or exc}", ctx) from None
    except tomllib.TOMLDecodeError as exc:
        raise click.UsageError(f"the config file {value} is not valid TOML: {exc}", ctx) from None
    assert ctx.command is not None
    by_key = {key_of(o): o for o in options(ctx.command)}
    defaults: dict[str, Any] = {}
    for key, raw in data.items():
        option = by_key.get(key)
        if option is None:
            close = difflib.get_close_matches(key.replace("_", "-"), list(by_key), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(sorted(by_key))})"
            raise click.UsageError(f"unknown key {key!r} in the config file {value}{hint}", ctx)
        assert option.name is not None
        defaults[option.name] = _checked(ctx, option, key, raw, value)
    ctx.meta["ripple.config_file"] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


def _expected(option: click.Option) -> tuple[tuple[type, ...], str]:
    """The TOML types a key accepts, and how to say so."""
    t = option.type
    if option.is_flag and not option.multiple:
        return (bool,), "true or false"
    if isinstance(t, click.types.IntParamType):
        return (int,), "an integer"
    if isinstance(t, click.types.FloatParamType):
        return (int, float), "a number"
    return (str,), "a string"


def _checked(ctx: click.Context, option: click.Option, key: str, raw: Any, file: str) -> Any:
    """A file value of the right TOML type, converted (and range-checked) as click would."""
    kinds, what = _expected(option)
    items = raw if option.multiple and isinstance(raw, list) else [raw]
    for item in items:
        if (isinstance(item, bool) and bool not in kinds) or not isinstance(item, kinds):
            raise click.UsageError(f"invalid value for {key!r} in {file}: expected {what}, got {item!r}", ctx)
    try:
        option.type_cast_value(ctx, raw)
    except click.BadParameter as exc:
        raise click.UsageError(f"invalid value for {key!r} in {file}: {exc.message}", ctx) from None
    return raw


def effective(command: click.Command, args: Sequence[str], parent: click.Context | None = None) -> Effective:
    """Resolve ``command``'s options from ``args``, the environment and the config file, as running it would."""
    ctx = command.make_context(command.name, list(args), parent=parent)
    settings = []
    for option in options(command):
        assert option.name is not None
        key = key_of(option)
        value = ctx.params.get(option.name)
        if is_secret(key) and value not in (None, False, ""):
            value = REDACTED
        settings.append(Setting(key, value, _SOURCES[ctx.get_parameter_source(option.name)], env_name(option)))
    return Effective(ctx.meta.get("ripple.config_file"), settings)


def as_toml(config: Effective) -> str:
    """The effective configuration as a TOML file to start from (unset keys commented out)."""
    lines = ["# ripple serve --config FILE  (precedence: flag > environment > file > default)"]
    if config.config_file:
        lines.append(f"# read from {config.config_file}")
    for s in config.settings:
        note = f"  # {s.source}, env {s.env}"
        if s.value is None:
            lines.append(f"# {s.key} = ...{note}")
        else:
            lines.append(f"{s.key} = {toml_value(s.value)}{note}")
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return msgspec.json.encode(str(value)).decode()  # a JSON string is a valid TOML basic string
