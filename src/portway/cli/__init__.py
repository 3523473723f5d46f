"""The `portway` (alias `connect`) command line: one module per command group.

Each command's module is imported only when that command runs (or `--help` lists them all), so
`portway hub` does not pay for the API client, rich or the agent runtime before its data plane
serves, and `portway up` does not pay for the hub.
"""

from __future__ import annotations

import importlib

import click

from portway import __version__
from portway.cli.group import PortwayGroup

# Command name -> (module, attribute); `portway --help` lists them sorted, as click does.
COMMANDS: dict[str, tuple[str, str]] = {
    "hub": ("portway.cli.hub", "hub"),
    "login": ("portway.cli.login", "login"),
    "up": ("portway.cli.up", "up"),
    "expose": ("portway.cli.expose", "expose"),
    "reach": ("portway.cli.reach", "reach"),
    "env": ("portway.cli.env", "env"),
    "check": ("portway.cli.check", "check"),
    "doctor": ("portway.cli.doctor", "doctor"),
    "join": ("portway.cli.join", "join"),
    "agents": ("portway.cli.agents", "agents"),
    "tunnels": ("portway.cli.tunnels", "tunnels"),
    "share": ("portway.cli.share", "share"),
    "shares": ("portway.cli.shares", "shares"),
    "webhooks": ("portway.cli.webhooks", "webhooks"),
    "events": ("portway.cli.events", "events"),
    "keys": ("portway.cli.keys", "keys"),
    "workspaces": ("portway.cli.workspaces", "workspaces"),
}


class LazyGroup(PortwayGroup):
    """A `PortwayGroup` that imports a command's module the first time the command is needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module_name, attribute = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module_name), attribute)
            assert isinstance(command, click.Command), f"{module_name}.{attribute}"
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="portway")
def cli() -> None:
    """Portway: expose private services through a hub and reach them on localhost."""


def main() -> None:
    cli(prog_name="portway")
