"""Where state lives, and settings resolved as: flag > environment > config.toml > default.

`SANDBOXCTL_HOME` moves everything (config, registry, local sandboxes) into one
directory; tests always set it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from sandboxctl.durations import format_duration, parse_duration
from sandboxctl.errors import ConfigError, UsageError
from sandboxctl.sizes import parse_size

if TYPE_CHECKING:
    from pathlib import Path

    from sandboxctl.quota import LiveQuota

APP_NAME = "sandboxctl"
ENV_HOME = "SANDBOXCTL_HOME"
ENV_DB = "SANDBOXCTL_DB"
ENV_DEBUG = "SANDBOXCTL_DEBUG"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"invalid number {text!r}: use a whole number greater than 0") from None
    if value < 1:
        raise UsageError(f"invalid number {text!r}: use a whole number greater than 0")
    return value


class Key(NamedTuple):
    """One setting: its parser, default, environment variable, and whether it is a secret."""

    name: str
    default: str | None
    parse: Callable[[str], Any]
    help: str
    env: str = ""
    secret: bool = False

    @property
    def env_var(self) -> str:
        return self.env or "SANDBOXCTL_" + self.name.upper().replace(".", "_")


KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key("backend", "docker", str, "backend used when --backend is not given (docker, daytona, local)"),
        Key("image", "python:3.12-slim", str, "image used when --image is not given"),
        Key("ttl.default", "24h", parse_duration, "lifetime of sandboxes with policy `default`"),
        Key("ttl.extended", "7d", parse_duration, "lifetime of sandboxes with policy `extended`"),
        Key("idle_timeout", "0s", parse_duration, "delete sandboxes unused this long (0s: never)"),
        Key("archive.retention", "30d", parse_duration, "how long deleted sandboxes stay in the archive"),
        Key("cleanup.limit", "100", _positive_int, "most sandboxes one cleanup run handles"),
        Key("cleanup.concurrency", "8", _positive_int, "parallel deletions in cleanup"),
        Key("cleanup.orphan_grace", "1h", parse_duration, "age making an unregistered labelled resource an orphan"),
        Key("agent.timeout", "1h", parse_duration, "agent-run timeout when --timeout is not given"),
        Key("agent.max_collect", "1GiB", parse_size, "most bytes of returned content agent-run collects"),
        Key("agent.max_file", "100MiB", parse_size, "largest returned file agent-run puts in the patch"),
        # Twice a Linux kernel checkout: ~90 bytes of memory per written entry while extracting (~18 MB), an inode each
        Key("agent.max_entries", "200000", _positive_int, "most files, directories and links agent-run collects"),
        Key("agent.keep_for", "24h", parse_duration, "lifetime of a sandbox kept after a run that did not succeed"),
        Key("quota.max_live", None, _positive_int, "most live sandboxes in this registry (unset: no limit)"),
        Key("quota.max_live_per_user", None, _positive_int, "most live sandboxes per created_by (unset: no limit)"),
        Key("daytona.api_key", None, str, "Daytona API key", env="DAYTONA_API_KEY", secret=True),
        Key("daytona.api_url", None, str, "Daytona API URL", env="DAYTONA_API_URL"),
        Key("daytona.target", None, str, "Daytona target region", env="DAYTONA_TARGET"),
    )
}


def _unknown_key(name: str) -> ConfigError:
    return ConfigError(f"unknown config key {name!r}: run `sandboxctl config show` to list the keys")


class Paths(NamedTuple):
    """Where this invocation's state lives.

    Held as text, and given out as `Path`s by the properties: the everyday commands (exec, status, delete)
    need only the registry file's name, and so never import pathlib (~4 ms of CPU with what it pulls in).
    """

    config_text: str
    data_text: str
    db_url: str
    db_source: str = "default"  # flag | env | default

    @property
    def config_file(self) -> Path:
        from pathlib import Path

        return Path(self.config_text)

    @property
    def data_dir(self) -> Path:
        from pathlib import Path

        return Path(self.data_text)

    @property
    def local_root(self) -> Path:
        return self.data_dir / "local"

    @property
    def cleanup_lock(self) -> Path:
        return self.data_dir / "cleanup.lock"

    @property
    def sqlite_file(self) -> str | None:
        """The registry file when the registry is SQLite, else None."""
        url = self.db_url
        if url.startswith("sqlite:///"):
            return url.removeprefix("sqlite:///")
        return None

    @classmethod
    def resolve(cls, db: str | None = None) -> Paths:
        home = os.environ.get(ENV_HOME)
        if home:
            config_text = os.path.join(home, "config.toml")
            data_text = home
        else:
            config_text = os.path.join(user_dir("config"), "config.toml")
            data_text = user_dir("data")
        source = "flag" if db else "env" if os.environ.get(ENV_DB) else "default"
        db = db or os.environ.get(ENV_DB)
        if not db:
            db_url = f"sqlite:///{os.path.join(data_text, 'registry.db')}"
        elif "://" in db:
            db_url = db
        else:
            db_url = f"sqlite:///{os.path.realpath(os.path.expanduser(db))}"
        return cls(config_text=config_text, data_text=data_text, db_url=db_url, db_source=source)


_USER_DIRS = {"config": ("XDG_CONFIG_HOME", ".config"), "data": ("XDG_DATA_HOME", ".local/share")}


def user_dir(kind: str) -> str:
    """platformdirs' user `config` or `data` directory for sandboxctl, as it computes it on Linux.

    Its common form is written out: an absolute `$XDG_…_HOME`, else an absolute `$HOME`. Importing
    platformdirs costs ~8 ms of CPU on every command of anyone without SANDBOXCTL_HOME; any other case
    (macOS, a relative or missing HOME) asks platformdirs itself. tests/test_config.py compares the two.
    """
    xdg_var, under_home = _USER_DIRS[kind]
    if sys.platform == "linux":
        xdg = os.environ.get(xdg_var, "")
        if os.path.isabs(xdg):
            return os.path.join(xdg, APP_NAME)
        if os.path.isabs(os.environ.get("HOME", "")):
            return os.path.join(os.path.expanduser(f"~/{under_home}"), APP_NAME)
    import platformdirs

    if kind == "config":
        return platformdirs.user_config_dir(APP_NAME, appauthor=False)
    return platformdirs.user_data_dir(APP_NAME, appauthor=False)


def _lookup(table: dict[str, Any], dotted: str) -> Any:
    node: Any = table
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The parsed config.toml ({} when absent); anything unreadable is exit 2 naming the file."""
    try:
        with open(path, "rb") as handle:
            import tomllib  # only when there is a file: exec and status rarely have one (~3 ms)

            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        raise ConfigError(f"cannot read config file {path}: {exc}") from None


class Setting(NamedTuple):
    key: str
    value: Any
    raw: str | None
    source: str  # default | file | env


class Settings:
    """Resolved settings for one invocation. Values are parsed on first use."""

    def __init__(self, paths: Paths, file_values: dict[str, Any]) -> None:
        self.paths = paths
        self._file = file_values

    @classmethod
    def load(cls, db: str | None = None) -> Settings:
        paths = Paths.resolve(db)
        return cls(paths, read_config_file(paths.config_text))

    def setting(self, name: str) -> Setting:
        key = KEYS.get(name)
        if key is None:
            raise _unknown_key(name)
        raw: str | None
        if os.environ.get(key.env_var):
            raw, source = os.environ[key.env_var], "env"
        elif (file_value := _lookup(self._file, name)) is not None:
            raw, source = str(file_value), "file"
        else:
            raw, source = key.default, "default"
        if raw is None:
            return Setting(name, None, None, source)
        try:
            value = key.parse(raw)
        except UsageError as exc:
            where = key.env_var if source == "env" else str(self.paths.config_file) if source == "file" else "default"
            raise ConfigError(f"bad value for {name} ({where}): {exc}") from None
        return Setting(name, value, raw, source)

    def get(self, name: str) -> Any:
        return self.setting(name).value

    # Typed accessors for the settings the services use.
    @property
    def backend(self) -> str:
        return str(self.get("backend"))

    @property
    def image(self) -> str:
        return str(self.get("image"))

    def ttl_for(self, policy: str) -> timedelta | None:
        """A policy's lifetime; `permanent` never expires."""
        if policy == "permanent":
            return None
        return self.get("ttl.extended" if policy == "extended" else "ttl.default")

    @property
    def idle_timeout(self) -> timedelta | None:
        value: timedelta = self.get("idle_timeout")
        return value if value.total_seconds() > 0 else None

    def quota(self, user: str) -> LiveQuota | None:
        """The quotas a new sandbox of `user` must fit, or None when none is set."""
        from sandboxctl.quota import LiveQuota

        max_live, per_user = self.get("quota.max_live"), self.get("quota.max_live_per_user")
        if max_live is None and per_user is None:
            return None
        return LiveQuota(user=user, max_live=max_live, max_live_per_user=per_user)


def take_log_format(args: list[str]) -> str | None:
    """Pop a leading `--log-format F` / `--log-format=F` (a root option) off `args` for the fast parsers."""
    if args[0] == "--log-format" and len(args) > 1:
        value = args[1]
        del args[:2]
        return value
    if args[0].startswith("--log-format="):
        return args.pop(0).partition("=")[2]
    return None


def configure_logs(settings: Settings, log_format: str | None) -> None:
    """Turn on JSON logs if asked (flag, then $SANDBOXCTL_LOG_FORMAT), masking the configured secrets."""
    from sandboxctl import logs

    secrets = tuple(str(settings.get(key.name) or "") for key in KEYS.values() if key.secret)
    logs.configure(log_format, secrets)


def show_value(setting: Setting) -> str | None:
    """How `config show/get` prints a value: secrets are never shown."""
    if setting.raw is None:
        return None
    if KEYS[setting.key].secret:
        return "********"
    if isinstance(setting.value, timedelta):
        return format_duration(setting.value)
    return setting.raw


def set_config_value(path: Path, name: str, raw: str) -> None:
    """Validate and write one key to config.toml atomically (temp file, fsync, rename), mode 0600."""
    key = KEYS.get(name)
    if key is None:
        raise _unknown_key(name)
    value = key.parse(raw)
    stored: Any = format_duration(value) if isinstance(value, timedelta) else value
    document = read_config_file(path)
    node = document
    *parents, leaf = name.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = stored
    atomic_write(path, _dump_toml(document))


def _dump_toml(document: dict[str, Any]) -> bytes:
    import tomli_w

    return tomli_w.dumps(document).encode()


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write via a temp file in the same directory, fsync, then `os.replace`: never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
