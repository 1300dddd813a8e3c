"""Config: precedence flag > env > file > default, `config` commands, unreadable files, secrets masked."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from sandboxctl.config import Settings
from sandboxctl.errors import ConfigError

from .conftest import Cli


def test_defaults(home: Path) -> None:
    settings = Settings.load()
    assert settings.backend == "docker"
    assert settings.ttl_for("default") == timedelta(hours=24)
    assert settings.ttl_for("extended") == timedelta(days=7)
    assert settings.ttl_for("permanent") is None
    assert settings.idle_timeout is None
    assert settings.get("archive.retention") == timedelta(days=30)
    assert settings.get("cleanup.limit") == 100
    assert settings.paths.config_file == home / "config.toml"
    assert settings.paths.db_url == f"sqlite:///{home / 'registry.db'}"


def test_env_beats_file_beats_default(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home.mkdir(parents=True)
    (home / "config.toml").write_text('backend = "local"\n[ttl]\ndefault = "2h"\nextended = "3d"\n')
    settings = Settings.load()
    assert settings.setting("backend").source == "file"
    assert settings.ttl_for("default") == timedelta(hours=2)
    monkeypatch.setenv("SANDBOXCTL_TTL_DEFAULT", "90m")
    monkeypatch.setenv("SANDBOXCTL_BACKEND", "docker")
    settings = Settings.load()
    assert settings.ttl_for("default") == timedelta(minutes=90)
    assert settings.setting("backend").source == "env"
    assert settings.ttl_for("extended") == timedelta(days=3)


def test_db_flag_beats_env(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SANDBOXCTL_DB", str(tmp_path / "env.db"))
    assert Settings.load().paths.db_url == f"sqlite:///{tmp_path / 'env.db'}"
    assert Settings.load(str(tmp_path / "flag.db")).paths.db_url == f"sqlite:///{tmp_path / 'flag.db'}"
    assert Settings.load("postgresql+psycopg://u@h/db").paths.db_url == "postgresql+psycopg://u@h/db"


def test_bad_value_in_file_names_the_file(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "config.toml").write_text('[ttl]\ndefault = "soon"\n')
    with pytest.raises(ConfigError) as info:
        Settings.load().ttl_for("default")
    assert str(home / "config.toml") in str(info.value)


def test_cli_config_set_get_show_path(cli: Cli, home: Path) -> None:
    cli.ok("config", "set", "ttl.default", "12h")
    cli.ok("config", "set", "cleanup.concurrency", "4")
    assert cli.ok("config", "get", "ttl.default").stdout.strip() == "12h"
    assert cli.ok("config", "path").stdout.strip() == str(home / "config.toml")
    shown = cli.ok("config", "show", "--json").json()
    assert shown["ttl.default"] == {"value": "12h", "source": "file"}
    assert shown["cleanup.concurrency"]["value"] == "4"
    env_shown = cli.ok("config", "show", "--json", env={"SANDBOXCTL_TTL_DEFAULT": "1h"}).json()
    assert env_shown["ttl.default"] == {"value": "1h", "source": "env"}
    mode = stat.S_IMODE(os.stat(home / "config.toml").st_mode)
    assert mode == 0o600, oct(mode)


def test_cli_config_rejects_bad_key_and_value(cli: Cli) -> None:
    result = cli("config", "set", "ttl.default", "forever")
    assert result.returncode == 2, str(result)
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, str(result)
    result = cli("config", "set", "no.such.key", "1")
    assert result.returncode == 2, str(result)
    assert "unknown config key" in result.stderr


def test_unreadable_config_is_exit_2_naming_the_file(cli: Cli, home: Path) -> None:
    home.mkdir(parents=True)
    (home / "config.toml").write_text("this is = = not toml\n")
    result = cli("status")
    assert result.returncode == 2, str(result)
    assert str(home / "config.toml") in result.stderr
    assert "Traceback" not in result.stderr


def test_api_key_is_masked_in_config_show(cli: Cli) -> None:
    cli.ok("config", "set", "daytona.api_key", "dtn_supersecret_123")
    for args in (("config", "show"), ("config", "show", "--json"), ("config", "get", "daytona.api_key")):
        result = cli.ok(*args)
        assert "dtn_supersecret_123" not in result.stdout + result.stderr, str(result)
    shown = cli.ok("config", "show", "--json", env={"DAYTONA_API_KEY": "dtn_env_secret"})
    assert "dtn_env_secret" not in shown.stdout


@pytest.mark.parametrize("xdg", [None, "", "relative/dir", "/xdg/base", "/xdg/trailing/"])
@pytest.mark.parametrize("home", [None, "", "relative-home", "/home/someone", "/home/trailing/"])
def test_user_dirs_are_platformdirs_own(monkeypatch: pytest.MonkeyPatch, xdg: str | None, home: str | None) -> None:
    """config.user_dir writes out platformdirs' common Linux rule: it must give what platformdirs gives."""
    import platformdirs

    from sandboxctl.config import user_dir

    for name, value in (("XDG_CONFIG_HOME", xdg), ("XDG_DATA_HOME", xdg), ("HOME", home)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    try:
        expected = (
            platformdirs.user_config_dir("sandboxctl", appauthor=False),
            platformdirs.user_data_dir("sandboxctl", appauthor=False),
        )
    except RuntimeError:  # platformdirs cannot tell (no usable home): neither can we
        with pytest.raises(RuntimeError):
            user_dir("config")
        return
    assert (user_dir("config"), user_dir("data")) == expected
