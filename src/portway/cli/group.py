"""The click group class every Portway command group uses, kept free of heavy imports.

`portway hub` loads only this, click and the hub's own modules before the data plane serves;
the API client, rich tables and agent runtime come with the commands that use them.
"""

from __future__ import annotations

from typing import Any

import click

from portway.errors import ApiError, ClientError, ConfigError

HINTS = {
    "invalid_api_key": "check --api-key, PORTWAY_API_KEY or run 'portway login' again",
    "missing_api_key": "run 'portway login --hub URL --api-key KEY' or pass --api-key",
    "admin_only": "use a key of the hub's admin workspace (its data dir has admin-api-key)",
}


class PortwayGroup(click.Group):
    """A click group whose commands report a `ConfigError` or a `ClientError` (the hub said
    no, or could not be reached) as one line on stderr, exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, ClientError) as exc:
            message = str(exc.message if isinstance(exc, ApiError) else exc)
            click.echo(f"error: {message}", err=True)
            if isinstance(exc, ApiError) and exc.code in HINTS:
                click.echo(f"hint: {HINTS[exc.code]}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            ctx.exit(130)
