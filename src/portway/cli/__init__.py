"""The `portway` (alias `connect`) command line: one module per command group."""

from __future__ import annotations

import click

from portway import __version__
from portway.cli import (
    agents,
    check,
    doctor,
    env,
    events,
    expose,
    hub,
    join,
    keys,
    login,
    reach,
    share,
    shares,
    tunnels,
    up,
    webhooks,
    workspaces,
)
from portway.cli.common import PortwayGroup


@click.group(cls=PortwayGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="portway")
def cli() -> None:
    """Portway: expose private services through a hub and reach them on localhost."""


for command in (
    hub.hub,
    login.login,
    up.up,
    expose.expose,
    reach.reach,
    env.env,
    check.check,
    doctor.doctor,
    join.join,
    agents.agents,
    tunnels.tunnels,
    share.share,
    shares.shares,
    webhooks.webhooks,
    events.events,
    keys.keys,
    workspaces.workspaces,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="portway")
