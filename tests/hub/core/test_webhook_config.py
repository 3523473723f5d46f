"""`--webhooks-allow-private`, its `PORTWAY_*` twin and TOML key; off by default."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from portway.cli import cli
from portway.errors import ConfigError
from portway.hub.core.config import HubConfig, load_hub_config


def test_off_by_default(tmp_path: Path) -> None:
    assert load_hub_config({"data_dir": str(tmp_path)}, {}).webhooks_allow_private is False


@pytest.mark.parametrize("word", ["on", "true", "1", "YES"])
def test_environment_switches_it_on(tmp_path: Path, word: str) -> None:
    env = {"PORTWAY_WEBHOOKS_ALLOW_PRIVATE": word}
    assert load_hub_config({"data_dir": str(tmp_path)}, env).webhooks_allow_private is True


def test_file_flag_and_precedence(tmp_path: Path) -> None:
    file = tmp_path / "hub.toml"
    file.write_text("[hub]\nwebhooks-allow-private = true\n")
    flags = {"data_dir": str(tmp_path)}
    assert load_hub_config(flags, {}, file).webhooks_allow_private is True
    env = {"PORTWAY_WEBHOOKS_ALLOW_PRIVATE": "off"}
    assert load_hub_config(flags, env, file).webhooks_allow_private is False
    on = {**flags, "webhooks_allow_private": "on"}
    assert load_hub_config(on, env, file).webhooks_allow_private is True


def test_nonsense_is_refused_naming_its_source(tmp_path: Path) -> None:
    env = {"PORTWAY_WEBHOOKS_ALLOW_PRIVATE": "maybe"}
    with pytest.raises(ConfigError, match="PORTWAY_WEBHOOKS_ALLOW_PRIVATE: must be on or off"):
        load_hub_config({"data_dir": str(tmp_path)}, env)


def test_the_hub_command_has_the_flag() -> None:
    result = CliRunner().invoke(cli, ["hub", "--help"])
    assert result.exit_code == 0
    assert "--webhooks-allow-private" in result.output
    assert "PORTWAY_WEBHOOKS_ALLOW_PRIVATE" in result.output


def test_the_flag_reaches_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from portway import logs
    from portway.cli import hub as hub_command

    seen: list[HubConfig] = []
    monkeypatch.setattr(hub_command, "_run", seen.append)
    monkeypatch.setattr(logs, "configure", lambda *_args: None)  # keep pytest's handlers
    monkeypatch.delenv("PORTWAY_WEBHOOKS_ALLOW_PRIVATE", raising=False)
    base = ["hub", "--data-dir", str(tmp_path)]
    for args, expected in ((base, False), ([*base, "--webhooks-allow-private"], True)):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert seen.pop().webhooks_allow_private is expected
