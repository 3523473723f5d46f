"""`portway share TUNNEL`: create a share link with an expiry and a policy, printed once.

HTTP(S) tunnels get an edge link (`http://<domain>:<edge>/s/<token>/`); TCP/UDP tunnels get a
join link and the `portway join` command a guest runs. The token is never shown again.
"""

from __future__ import annotations

from typing import Any

import click

from portway.cli.common import ApiOptions, api_options, details
from portway.domain.share_rules import uses_edge

EXPIRES = ("1h", "24h", "7d", "30d", "never")


def _print_link(tunnel: dict[str, Any], created: dict[str, Any]) -> None:
    edge = uses_edge(tunnel["protocol"])
    rows: list[tuple[str, Any]] = [
        ("share", f"{created['name']} ({created['id']})"),
        ("tunnel", tunnel["name"]),
        ("expires", created.get("expiresAt") or "never"),
        ("URL" if edge else "join link", created["shareUrl"]),
    ]
    if not edge:
        rows.append(("guest runs", f"portway join {created['shareUrl']}"))
    details(rows)
    click.echo("The link is shown only once; revoke it with 'portway shares revoke ID'.")


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


@click.command()
@click.argument("tunnel")
@click.option("--name", help="Share name (default: the tunnel's name).")
@click.option("--description", help="What the share is for.")
@click.option("--expires", type=click.Choice(EXPIRES), help="Expiry (default 24h).")
@click.option("--methods", metavar="GET,POST", help="HTTP methods allowed (default: all).")
@click.option("--paths", metavar="/api,/health", help="Path prefixes allowed (default: all).")
@click.option("--rate-limit", type=click.IntRange(1, 1000), help="Requests (TCP: connections) "
              "per minute.")  # fmt: skip
@api_options
def share(
    tunnel: str, name: str | None, description: str | None, expires: str | None,
    methods: str | None, paths: str | None, rate_limit: int | None, api: ApiOptions,
) -> None:  # fmt: skip
    """Create a share link to TUNNEL (name or id) and print it once."""
    with api.client() as client:
        found: dict[str, Any] = client.get(f"/v1/tunnels/{tunnel}")
        body: dict[str, Any] = {"name": name or found["name"]}
        fields = {
            "description": description, "expiresIn": expires, "allowedMethods": _split(methods),
            "allowedPaths": _split(paths), "rateLimit": rate_limit,
        }  # fmt: skip
        body.update({k: v for k, v in fields.items() if v is not None})
        created: dict[str, Any] = client.post(f"/v1/tunnels/{found['id']}/shares", body)
    api.output.result(created, lambda: _print_link(found, created))
