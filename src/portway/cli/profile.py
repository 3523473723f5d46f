"""The CLI's saved profiles in ``$PORTWAY_CONFIG_DIR/config.toml`` (default ~/.config/portway).

`portway login` writes a profile; every other command reads it, with ``--hub``/``--api-key``
and ``PORTWAY_HUB``/``PORTWAY_API_KEY`` taking precedence. The file holds secrets: mode 0600.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from portway.errors import ConfigError

DEFAULT_PROFILE = "default"


def config_dir() -> Path:
    if env := os.environ.get("PORTWAY_CONFIG_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "portway"


def config_path() -> Path:
    return config_dir() / "config.toml"


@dataclass
class Profile:
    """One hub and the credentials used with it. Agent fields are filled by `portway up`."""

    hub: str | None = None
    api_key: str | None = None
    agent_id: str | None = None
    agent_token: str | None = None
    agent_endpoint: str | None = None  # host:port of the hub's agent port
    agent_tls: str | None = None  # "on" or "off"
    ca_fingerprint: str | None = None  # the pinned SHA-256 of the hub's CA
    ca_certificate: str | None = None  # that CA, PEM
    agent_key: str | None = None  # the agent's own private key, PEM: its end-to-end identity
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> Profile:
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: str(v) for k, v in table.items() if k in known and v is not None}
        extra = {k: v for k, v in table.items() if k not in known}
        return cls(**values, extra=extra)

    def to_table(self) -> dict[str, Any]:
        table = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {k: v for k, v in table.items() if v is not None} | self.extra


def _read() -> dict[str, Any]:
    path = config_path()
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix or delete it") from None


def load_profile(name: str = DEFAULT_PROFILE) -> Profile:
    table = _read().get("profiles", {}).get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{config_path()}: [profiles.{name}] must be a table")
    return Profile.from_table(table)


def save_profile(profile: Profile, name: str = DEFAULT_PROFILE) -> Path:
    """Write `profile` under `name`, keeping other profiles; the file ends up mode 0600."""
    doc = _read()
    doc.setdefault("profiles", {})[name] = profile.to_table()
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A temporary file of our own (mkstemp creates it 0600): several `portway` processes
    # started at once on one machine may save at the same moment.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(doc, fh)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def profile_lock() -> Iterator[None]:
    """Hold the profile directory's lock: `ensure_agent` reads, enrols and saves under it, so
    processes started together on a fresh machine enrol one agent, not one each."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
