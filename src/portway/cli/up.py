"""`portway up`: run this machine's agent in the foreground."""

from __future__ import annotations

import click

from portway.agent.runtime import AgentRuntime
from portway.cli.agent_setup import (
    direct_options,
    ensure_agent,
    reporter,
    run_foreground,
    sessions_option,
    settings_from,
)
from portway.cli.common import ApiOptions, api_options


@click.command()
@click.option("--name", help="Agent name on first enrolment (generated when omitted).")
@click.option("--label", help="Agent label on first enrolment (default: the host name).")
@click.option(
    "--allow", multiple=True, metavar="CIDR[:PORTS]", help="Only dial targets matching these rules."
)
@click.option(
    "--deny", multiple=True, metavar="CIDR[:PORTS]", help="Never dial targets matching these rules."
)
@direct_options
@sessions_option
@api_options
def up(
    name: str | None,
    label: str | None,
    allow: tuple[str, ...],
    deny: tuple[str, ...],
    direct_listen: str | None,
    advertise: tuple[str, ...],
    no_direct: bool,
    sessions: int,
    api: ApiOptions,
) -> None:
    """Enrol this machine (first run) and serve its tunnels and connections until Ctrl-C."""
    with api.client() as client:
        profile = ensure_agent(api, client, name=name, label=label)
    settings = settings_from(
        profile, serve=True, hold_binds=True, allow=allow, deny=deny, sessions=sessions,
        direct=not no_direct, direct_listen=direct_listen, advertise=advertise,
    )  # fmt: skip
    click.echo(f"Agent {profile.agent_id} serving; press Ctrl-C to stop.", err=True)
    run_foreground(AgentRuntime(settings, on_state=reporter(api.output)))
