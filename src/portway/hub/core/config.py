"""Hub settings and where each comes from: flag > ``PORTWAY_*`` variable > TOML file > default.

`portway hub` collects the flags it was given (unset ones are None) and calls `load_hub_config`;
tests call it with plain dicts.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portway.domain.addresses import (
    AddressError,
    HostPort,
    client_url,
    parse_host_port,
    parse_port_range,
)
from portway.errors import ConfigError

DEFAULTS: dict[str, str] = {
    "data_dir": "./.portway",
    "api_listen": "127.0.0.1:7080",
    "edge_listen": "127.0.0.1:7081",
    "agent_listen": "127.0.0.1:7835",
    "port_range": "20000-20999",
    "public_domain": "localhost",
    "database_url": "",
    "agent_tls": "on",
    "agent_tls_cert": "",
    "agent_tls_key": "",
    "log_level": "info",
    "log_format": "text",
    "webhooks_allow_private": "off",
    # Edge client timeouts in seconds (see docs/edge.md): a whole request head, an idle
    # kept-alive connection, and the gap between two reads of a request body.
    "edge_head_timeout": "15",
    "edge_idle_timeout": "75",
    "edge_body_timeout": "60",
}

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def env_name(key: str) -> str:
    """The environment twin of a setting: ``api_listen`` -> ``PORTWAY_API_LISTEN``."""
    return "PORTWAY_" + key.upper()


@dataclass(frozen=True, slots=True)
class HubConfig:
    data_dir: Path
    api_listen: HostPort
    edge_listen: HostPort
    agent_listen: HostPort
    port_range: tuple[int, int]
    public_domain: str
    database_url: str
    log_level: str
    log_format: str
    agent_tls: str = "on"
    agent_tls_cert: Path | None = None
    agent_tls_key: Path | None = None
    # Let webhook URLs reach loopback, private and link-local addresses (off: SSRF guard).
    webhooks_allow_private: bool = False
    edge_head_timeout: float = 15.0
    edge_idle_timeout: float = 75.0
    edge_body_timeout: float = 60.0

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin-api-key"

    @property
    def api_url(self) -> str:
        """The URL clients use to reach the API (a wildcard bind is shown as loopback)."""
        return client_url("http", self.api_listen.host, self.api_listen.port)


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a hub TOML file: keys named like the flags (``api-listen`` or ``api_listen``)."""
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    table = raw.get("hub", raw)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [hub] must be a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in DEFAULTS:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
        values[name] = value
    return values


def _agent_tls(
    merged: Mapping[str, str], origin: Mapping[str, str]
) -> tuple[str, Path | None, Path | None]:
    mode = merged["agent_tls"].lower()
    if mode not in ("on", "off"):
        raise ConfigError(f"{origin['agent_tls']}: must be on or off")
    paths: list[Path | None] = []
    for name in ("agent_tls_cert", "agent_tls_key"):
        path = Path(merged[name]).expanduser() if merged[name] else None
        if path is not None and not path.is_file():
            raise ConfigError(f"{origin[name]}: {path} is not a readable file")
        paths.append(path)
    cert, key = paths
    if (cert is None) != (key is None):
        raise ConfigError("--agent-tls-cert and --agent-tls-key go together: give both or neither")
    return mode, cert, key


def _switch(merged: Mapping[str, str], origin: Mapping[str, str], key: str) -> bool:
    word = merged[key].strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{origin[key]}: must be on or off (true/false, yes/no, 1/0)")


def _seconds(merged: Mapping[str, str], origin: Mapping[str, str], key: str) -> float:
    """A timeout in seconds: a positive number up to a day (`0.5`, `15`, `75`)."""
    try:
        value = float(merged[key])
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:
        raise ConfigError(f"{origin[key]}: must be a number of seconds above 0 and up to 86400")
    return value


def load_hub_config(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config_file: Path | None = None,
) -> HubConfig:
    """Merge the four sources and validate every value; raises ConfigError naming the culprit."""
    file_values = read_config_file(config_file) if config_file else {}
    merged: dict[str, str] = {}
    origin: dict[str, str] = {}
    for key, default in DEFAULTS.items():
        if flags.get(key) is not None:
            merged[key], origin[key] = str(flags[key]), "--" + key.replace("_", "-")
        elif env_name(key) in environ:
            merged[key], origin[key] = environ[env_name(key)], env_name(key)
        elif key in file_values:
            merged[key], origin[key] = str(file_values[key]), f"{key} in {config_file}"
        else:
            merged[key], origin[key] = default, "default"

    def listen(key: str) -> HostPort:
        try:
            return parse_host_port(merged[key], allow_zero_port=True)
        except AddressError as exc:
            raise ConfigError(f"{origin[key]}: {exc}") from None

    try:
        port_range = parse_port_range(merged["port_range"])
    except AddressError as exc:
        raise ConfigError(f"{origin['port_range']}: {exc}") from None
    level = merged["log_level"].lower()
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"{origin['log_level']}: log level must be one of {', '.join(LOG_LEVELS)}"
        )
    fmt = merged["log_format"].lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"{origin['log_format']}: log format must be one of text, json")
    domain = merged["public_domain"].strip().lower().strip(".")
    if not domain or any(ch.isspace() or ch in "/:@" for ch in domain):
        raise ConfigError(f"{origin['public_domain']}: {merged['public_domain']!r} is not a domain")

    data_dir = Path(merged["data_dir"]).expanduser().resolve()
    database_url = merged["database_url"] or f"sqlite+aiosqlite:///{data_dir / 'portway.db'}"
    if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError(
            f"{origin['database_url']}: use sqlite+aiosqlite:///PATH or postgresql+asyncpg://…"
        )
    agent_tls, tls_cert, tls_key = _agent_tls(merged, origin)
    return HubConfig(
        agent_tls=agent_tls,
        agent_tls_cert=tls_cert,
        agent_tls_key=tls_key,
        webhooks_allow_private=_switch(merged, origin, "webhooks_allow_private"),
        edge_head_timeout=_seconds(merged, origin, "edge_head_timeout"),
        edge_idle_timeout=_seconds(merged, origin, "edge_idle_timeout"),
        edge_body_timeout=_seconds(merged, origin, "edge_body_timeout"),
        data_dir=data_dir,
        api_listen=listen("api_listen"),
        edge_listen=listen("edge_listen"),
        agent_listen=listen("agent_listen"),
        port_range=port_range,
        public_domain=domain,
        database_url=database_url,
        log_level=level,
        log_format=fmt,
    )
