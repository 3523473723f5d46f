"""Hub settings: flag > PORTWAY_* variable > TOML file > default, each value validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from portway.domain.addresses import HostPort
from portway.errors import ConfigError
from portway.hub.core.config import load_hub_config


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_hub_config({}, {})
    assert config.data_dir == tmp_path / ".portway"
    assert config.api_listen == HostPort("127.0.0.1", 7080)
    assert config.edge_listen == HostPort("127.0.0.1", 7081)
    assert config.agent_listen == HostPort("127.0.0.1", 7835)
    assert config.port_range == (20000, 20999)
    assert config.public_domain == "localhost"
    assert config.database_url == f"sqlite+aiosqlite:///{tmp_path / '.portway' / 'portway.db'}"
    assert config.admin_key_file == tmp_path / ".portway" / "admin-api-key"
    assert config.api_url == "http://127.0.0.1:7080"


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    file = tmp_path / "hub.toml"
    file.write_text(
        'api-listen = "127.0.0.1:1001"\n'
        'edge_listen = "127.0.0.1:1002"\n'
        'agent-listen = "127.0.0.1:1003"\n'
    )
    env = {"PORTWAY_API_LISTEN": "127.0.0.1:2001", "PORTWAY_EDGE_LISTEN": "127.0.0.1:2002"}
    flags = {"api_listen": "127.0.0.1:3001", "edge_listen": None}
    config = load_hub_config(flags, env, file)
    assert config.api_listen.port == 3001  # flag beats env and file
    assert config.edge_listen.port == 2002  # env beats file
    assert config.agent_listen.port == 1003  # file beats default
    assert config.port_range == (20000, 20999)  # default


def test_hub_table_in_file(tmp_path: Path) -> None:
    file = tmp_path / "hub.toml"
    file.write_text('[hub]\npublic-domain = "Tunnels.Example.COM"\nport-range = "30000-30010"\n')
    config = load_hub_config({}, {}, file)
    assert config.public_domain == "tunnels.example.com"
    assert config.port_range == (30000, 30010)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"api_listen": "nonsense"}, "--api-listen"),
        ({"agent_listen": "127.0.0.1:70000"}, "--agent-listen"),
        ({"port_range": "2000-1000"}, "--port-range"),
        ({"database_url": "mysql://x"}, "--database-url"),
        ({"log_level": "loud"}, "--log-level"),
        ({"public_domain": "a b"}, "--public-domain"),
    ],
)
def test_invalid_values_name_their_source(flags: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_hub_config(flags, {})


def test_env_value_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="PORTWAY_PORT_RANGE"):
        load_hub_config({}, {"PORTWAY_PORT_RANGE": "x"})


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_hub_config({}, {}, tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("api-listen = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_hub_config({}, {}, bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('colour = "blue"\n')
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_hub_config({}, {}, unknown)


def test_postgres_url_accepted() -> None:
    url = "postgresql+asyncpg://portway@db.internal/portway"
    assert load_hub_config({"database_url": url}, {}).database_url == url
