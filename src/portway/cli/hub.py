"""`portway hub`: run the hub in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from portway.hub.core.config import DEFAULTS, HubConfig, env_name, load_hub_config

F = TypeVar("F", bound=Callable[..., Any])


def _option(key: str, help_text: str) -> Callable[[F], F]:
    flag = "--" + key.replace("_", "-")
    default = DEFAULTS[key] or "SQLite in the data dir"
    return click.option(
        flag, key, default=None, help=f"{help_text} [default: {default}; env: {env_name(key)}]"
    )


@click.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    envvar="PORTWAY_CONFIG",
    help="TOML file with hub settings [env: PORTWAY_CONFIG].",
)
@_option("data_dir", "Directory for the store, keys and certificates.")
@_option("api_listen", "REST API address.")
@_option("edge_listen", "Public HTTP edge address.")
@_option("agent_listen", "Agent endpoint address.")
@_option("port_range", "Hub ports for public TCP/UDP tunnels.")
@_option("public_domain", "Domain of public URLs (<slug>.<domain>).")
@_option("database_url", "sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB.")
@_option("agent_tls", "TLS on the agent endpoint: on (own CA, pinned by agents) or off.")
@_option("agent_tls_cert", "Certificate chain (PEM) for the agent endpoint instead of the own CA.")
@_option("agent_tls_key", "Private key (PEM) for --agent-tls-cert.")
@_option("log_level", "debug, info, warning or error.")
@_option("log_format", "text or json.")
@_option("edge_head_timeout", "Seconds to receive a whole request head (then 408).")
@_option("edge_idle_timeout", "Seconds a kept-alive edge connection may stay idle.")
@_option("edge_body_timeout", "Seconds allowed between reads of a request body (then 408).")
@click.option(
    "--webhooks-allow-private",
    "webhooks_allow_private",
    is_flag=True,
    default=None,
    help="Let webhook URLs reach loopback, private and link-local addresses "
    f"[default: refused; env: {env_name('webhooks_allow_private')}=on].",
)
def hub(config_file: Path | None, **flags: Any) -> None:
    """Run a hub: the REST API, agent endpoint, edge and hub ports, in one process."""
    # The flag can only switch the guard off; without it, the variable or file decides.
    flags["webhooks_allow_private"] = "on" if flags.get("webhooks_allow_private") else None
    config = load_hub_config(flags, os.environ, config_file)
    from portway import logs

    logs.configure(config.log_level, config.log_format)
    _run(config)


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return None
    return uvloop.new_event_loop


def _run(config: HubConfig) -> None:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(config))


async def _serve(config: HubConfig) -> None:
    from portway.hub.server import Hub

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    hub = Hub(config)
    try:
        await hub.start()
    except OSError as exc:
        raise click.ClickException(f"cannot start the hub: {exc}") from None
    _print_banner(hub)
    try:
        await stop.wait()
    finally:
        click.echo("Shutting down…", err=True)
        await hub.stop()


def _print_banner(hub: Any) -> None:
    config: HubConfig = hub.config
    boot = hub.bootstrap
    url = hub.api_url
    lines = [
        "Portway hub is running.",
        f"  API:        {url}",
        f"  API docs:   {url}/docs",
        f"  Store:      {hub.db.dialect} ({_store_hint(config)})",
    ]
    endpoint = hub.dataplane.endpoint
    agent_port = f"{config.agent_listen}"
    if endpoint.tls:
        lines += [f"  Agents:     {agent_port} (TLS; CA fingerprint {endpoint.ca_fingerprint})"]
    else:
        lines += [f"  Agents:     {agent_port} (plain TCP: --agent-tls off)"]
    lines += [f"  Edge:       {hub.edge_url} (public URLs http://<slug>.{config.public_domain}:…)"]
    if config.webhooks_allow_private:
        lines += ["  Webhooks:   may call private addresses (--webhooks-allow-private)"]
    if boot.admin_key:
        lines += [
            "",
            "Created the admin workspace. Its API key (shown once, also saved with mode 0600 to",
            f"{boot.key_file}):",
            f"  {boot.admin_key}",
        ]
    else:
        lines += [
            f"  Admin key:  {boot.key_file}" + ("" if boot.key_file.exists() else " (missing)")
        ]
    lines += [
        "",
        "Enrol an agent on this machine or another:",
        f"  portway login --hub {url} --api-key $(cat {boot.key_file})",
        "  portway up",
        "",
        "Press Ctrl-C to stop.",
    ]
    click.echo("\n".join(lines))
    sys.stdout.flush()


def _store_hint(config: HubConfig) -> str:
    url = config.database_url
    if url.startswith("sqlite"):
        return url.split("///", 1)[-1]
    # Never print a password.
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"
