"""`portway reach NAME`: make a tunnel answer on this machine's localhost.

While it runs, a state file (see `cli/reaching.py`) tells `portway env` and `portway doctor`
which tunnel is reached on which local port; it is removed when the command exits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from portway.agent.reach import LOCALHOST, first_free_port
from portway.agent.runtime import AgentRuntime
from portway.cli.agent_setup import (
    ensure_agent,
    reporter,
    run_foreground,
    sessions_option,
    settings_from,
)
from portway.cli.common import ApiOptions, api_options
from portway.cli.reaching import ReachState, forget, local_host, process_start, record
from portway.domain.tunnel_rules import connection_string, service_kind
from portway.errors import ConfigError


@click.command()
@click.argument("tunnel")
@click.option(
    "--port",
    "local_port",
    type=click.IntRange(1, 65535),
    help="Local port (default: the target's port, or the next free one).",
)
@click.option(
    "--bind",
    "bind_addresses",
    multiple=True,
    metavar="ADDR",
    help="Local address to listen on (default 127.0.0.1 and ::1).",
)
@click.option(
    "--relay",
    is_flag=True,
    help="Always go through the hub, never straight to the exposing agent.",
)
@sessions_option
@api_options
def reach(
    tunnel: str,
    local_port: int | None,
    bind_addresses: tuple[str, ...],
    relay: bool,
    sessions: int,
    api: ApiOptions,
) -> None:
    """Listen on localhost and carry every connection to TUNNEL (name or id) until Ctrl-C."""
    with api.client() as client:
        found: dict[str, Any] = client.get(f"/v1/tunnels/{tunnel}")
        profile = ensure_agent(api, client, name=None, label=None)
    addresses = bind_addresses or LOCALHOST
    wanted = local_port or found["target"]["port"]
    udp = found["protocol"] == "udp"
    port = wanted if local_port else first_free_port(wanted, addresses, udp=udp)
    if port == 0:
        raise ConfigError(f"no free local port at or above {wanted}; pass --port")
    if port != wanted:
        click.echo(f"Port {wanted} is in use; using {port} instead.", err=True)
    kind = service_kind(found["protocol"], found["target"]["port"], found.get("detectedProtocol"))
    host = local_host(addresses)
    settings = settings_from(
        profile, serve=False, hold_binds=False, sessions=sessions, direct=not relay
    )
    runtime = AgentRuntime(settings, on_state=reporter(api.output))
    written: list[Path] = []

    async def prepare(rt: AgentRuntime) -> None:
        bound = await rt.add_reach(
            found["id"], found["name"], port, tuple(addresses), protocol=found["protocol"]
        )
        url = connection_string(kind, bound, metadata=found.get("metadata"))
        if host != "localhost":  # bound to a specific non-loopback address only
            url = url.replace(f"localhost:{bound}", f"{host}:{bound}", 1)
        state = ReachState(
            tunnel_id=found["id"], name=found["name"], protocol=found["protocol"],
            local_host=host, local_port=bound, bind_addresses=list(addresses),
            connection_string=url, process_start=process_start(os.getpid()),
        )  # fmt: skip
        written.append(record(api.profile_name, state))
        where = f"{host}:{bound}" + (" (UDP)" if udp else "")
        api.output.result(
            {
                "tunnel": found["name"],
                "localHost": host,
                "localPort": bound,
                "connectionString": url,
            },
            f"Reaching {found['name']} on {where}\n  {url}\nPress Ctrl-C to stop.",
        )

    def cleanup() -> None:
        for path in written:
            forget(path)

    run_foreground(runtime, prepare=prepare, cleanup=cleanup)
