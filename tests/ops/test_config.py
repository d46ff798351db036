"""Configuration of ``ripple serve``: flag > environment > file > default, ``ripple config``, bad configuration is one
line and exit 2 with nothing created, and the table is derived from the options (a new option is configurable)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest

from ripple.config import ConfiguredCommand, as_toml, effective
from tests.conftest import RIPPLE, ROOT, SECOND, ripple_env
from tests.http.test_serve import serving, stop


def ripple(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RIPPLE, *args], cwd=cwd, env=ripple_env(**env), capture_output=True, text=True,
                          timeout=30 * SECOND)


def settings(cwd: Path, *args: str, **env: str) -> dict[str, dict[str, Any]]:
    result = ripple(cwd, "config", *args, **env)
    assert result.returncode == 0, result.stderr
    return {s["key"]: s for s in json.loads(result.stdout)["settings"]}


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    (tmp_path / "ripple.toml").write_text('port = 9000\nhost = "0.0.0.0"\nlog-format = "json"\nmax-queue = 50\n')
    file = ("--config", "ripple.toml")
    assert settings(tmp_path)["port"] == {"key": "port", "value": 8000, "source": "default", "env": "RIPPLE_PORT"}
    assert settings(tmp_path, *file)["port"]["value"] == 9000
    assert settings(tmp_path, *file, RIPPLE_PORT="9100")["port"] == {
        "key": "port", "value": 9100, "source": "env", "env": "RIPPLE_PORT"}
    chosen = settings(tmp_path, *file, "--port", "9200", RIPPLE_PORT="9100")
    assert chosen["port"]["value"] == 9200 and chosen["port"]["source"] == "flag"
    assert chosen["host"] == {"key": "host", "value": "0.0.0.0", "source": "file", "env": "RIPPLE_HOST"}
    assert chosen["max-queue"]["value"] == 50 and chosen["durability"]["source"] == "default"
    # the file can be named by RIPPLE_CONFIG too, and flags of every kind resolve through the same rule
    via_env = settings(tmp_path, "--no-metrics", RIPPLE_CONFIG="ripple.toml", RIPPLE_ACCESS_LOG="true")
    assert via_env["log-format"]["value"] == "json" and via_env["log-format"]["source"] == "file"
    assert via_env["access-log"] == {"key": "access-log", "value": True, "source": "env", "env": "RIPPLE_ACCESS_LOG"}
    assert via_env["metrics"]["value"] is False and via_env["metrics"]["source"] == "flag"
    assert json.loads(ripple(tmp_path, "config", *file).stdout)["config_file"] == "ripple.toml"


async def test_serve_runs_with_the_file_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / "ripple.toml").write_text('log-format = "json"\ndb = "from-file.db"\n')
    env = ripple_env(RIPPLE_CONFIG="ripple.toml", RIPPLE_PORT="0")
    async with serving(tmp_path, env=env) as (proc, _, db):
        assert db == str(tmp_path / "from-file.db")
        code, _, err = await stop(proc)
    assert code == 0, err
    lines = [json.loads(line) for line in err.splitlines()]
    assert lines[0]["event"] == "startup" and lines[0]["db"] == str(tmp_path / "from-file.db")


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("prot = 9000\n", {}, "unknown key 'prot' in the config file ripple.toml (did you mean 'port'?)"),
        ('port = "9000"\n', {}, "invalid value for 'port' in ripple.toml: expected an integer, got '9000'"),
        ("port = 70000\n", {}, "invalid value for 'port' in ripple.toml: 70000 is not in the range 0<=x<=65535"),
        ("iii = 1\n", {}, "invalid value for 'iii' in ripple.toml: expected true or false, got 1"),
        ('durability = "fast"\n', {}, "invalid value for 'durability' in ripple.toml: 'fast' is not one of"),
        ("port = \n", {}, "the config file ripple.toml is not valid TOML"),
        ("", {"RIPPLE_PORT": "eighty"}, "invalid value in the environment variable RIPPLE_PORT: 'eighty'"),
        ("", {"RIPPLE_METRICS": "perhaps"}, "invalid value in the environment variable RIPPLE_METRICS: 'perhaps'"),
        ("", {"RIPPLE_LOG_FORMAT": "xml"}, "invalid value in the environment variable RIPPLE_LOG_FORMAT: 'xml'"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "config"])
def test_bad_configuration_is_one_line_and_exit_2(
    tmp_path: Path, command: str, toml: str, env: dict[str, str], message: str
) -> None:
    (tmp_path / "ripple.toml").write_text(toml)
    result = ripple(tmp_path, command, "--config", "ripple.toml", **env)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"ripple: {message}"), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ripple.toml"]  # no database was created


@pytest.mark.parametrize("path", ["missing.toml", "."])
def test_an_unreadable_config_file_is_one_line_and_exit_2(tmp_path: Path, path: str) -> None:
    result = ripple(tmp_path, "serve", "--config", path, "--port", "0")
    assert result.returncode == 2
    assert result.stderr.startswith(f"ripple: cannot read the config file {path}: ") and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_unknown_ripple_variables_are_ignored(tmp_path: Path) -> None:
    assert settings(tmp_path, RIPPLE_NOT_AN_OPTION="1")["port"]["source"] == "default"


def test_config_as_toml_round_trips(tmp_path: Path) -> None:
    made = ripple(tmp_path, "config", "--format", "toml", "--port", "9300", "--iii")
    assert made.returncode == 0, made.stderr
    (tmp_path / "made.toml").write_text(made.stdout)
    again = settings(tmp_path, "--config", "made.toml")
    assert again["port"]["value"] == 9300 and again["port"]["source"] == "file"
    assert again["iii"]["value"] is True and again["app"]["value"] is None


def test_every_key_is_documented() -> None:
    from ripple.cli import serve_command
    from ripple.config import env_name, key_of, options

    documented = (ROOT / "docs" / "operations.md").read_text()
    missing = [key_of(o) for o in options(serve_command) if f"| `{key_of(o)}` | `{env_name(o)}` |" not in documented]
    assert missing == [], "add these keys to the table in docs/operations.md"


# ---- derived from the options --------------------------------------------------------------------------------


@click.command("demo", cls=ConfiguredCommand)
@click.option("--listen-port", type=click.IntRange(0, 65535), default=1)
@click.option("--auth-token", default=None)
@click.option("--feature/--no-feature", default=False)
@click.option("--origin", "origins", multiple=True)
def demo(**_: Any) -> None:
    """A command as another branch might add options to serve."""


def test_a_new_option_is_configurable_by_env_and_file_and_secrets_are_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "demo.toml").write_text('listen-port = 7\norigin = ["https://a.example", "https://b.example"]\n')
    monkeypatch.setenv("RIPPLE_AUTH_TOKEN", "hunter2")
    monkeypatch.setenv("RIPPLE_FEATURE", "yes")
    config = effective(demo, ["--config", str(tmp_path / "demo.toml")])
    got = {s.key: (s.value, s.source, s.env) for s in config.settings}
    assert got == {
        "listen-port": (7, "file", "RIPPLE_LISTEN_PORT"),
        "auth-token": ("<redacted>", "env", "RIPPLE_AUTH_TOKEN"),
        "feature": (True, "env", "RIPPLE_FEATURE"),
        "origin": (("https://a.example", "https://b.example"), "file", "RIPPLE_ORIGIN"),
    }
    assert "hunter2" not in as_toml(config)
    (tmp_path / "bad.toml").write_text('origin = "https://a.example"\n')  # a repeatable option takes a list
    with pytest.raises(click.UsageError, match="invalid value for 'origin' in"):
        effective(demo, ["--config", str(tmp_path / "bad.toml")])
    (tmp_path / "bad.toml").write_text("origin = [1]\n")
    with pytest.raises(click.UsageError, match="expected a string, got 1"):
        effective(demo, ["--config", str(tmp_path / "bad.toml")])
