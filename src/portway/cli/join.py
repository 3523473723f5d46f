"""`portway join SHARE_URL`: reach a shared TCP/UDP tunnel with no account and no profile.

Fetches `GET /v1/join/<token>` (no API key: the token is the credential), then runs an agent
session authenticated by the share token that only reaches the shared tunnel, listening on
localhost until Ctrl-C. The hub enforces expiry, revocation and the rate limit; a revoked share
ends the session (this command then exits with the hub's reason).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import click
import httpx

from portway.agent.reach import LOCALHOST, first_free_port
from portway.agent.runtime import AgentRuntime
from portway.agent.settings import AgentSettings
from portway.cli.agent_setup import reporter, run_foreground
from portway.cli.output import Output
from portway.errors import ConfigError
from portway.net import identity


def fetch(share_url: str) -> tuple[str, dict[str, Any]]:
    """The token of `share_url` and what the hub says a guest needs; ConfigError when unusable."""
    token = urlsplit(share_url).path.rstrip("/").rsplit("/", 1)[-1]
    try:
        response = httpx.get(share_url, timeout=15)
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach the hub at {share_url}: {exc}") from None
    if response.status_code in (404, 410):
        message = response.json().get("error", {}).get("message", "share link not usable")
        raise ConfigError(f"{message} (HTTP {response.status_code})")
    response.raise_for_status()
    info: dict[str, Any] = response.json()
    if info.get("agentEndpoint") is None:
        raise ConfigError("this hub has no agent endpoint")
    return token, info


@click.command()
@click.argument("share_url")
@click.option("--port", "local_port", type=click.IntRange(1, 65535), help="Local port.")
@click.option(
    "--relay", is_flag=True, help="Always go through the hub, never straight to the agent."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of text.")
def join(share_url: str, local_port: int | None, relay: bool, as_json: bool) -> None:
    """Carry localhost connections to the tunnel shared by SHARE_URL until Ctrl-C."""
    token, info = fetch(share_url)
    endpoint, tunnel = info["agentEndpoint"], info["tunnel"]
    udp = tunnel["protocol"] == "udp"
    wanted = local_port or tunnel["port"]
    port = wanted if local_port else first_free_port(wanted, LOCALHOST, udp=udp)
    if port == 0:
        raise ConfigError(f"no free local port at or above {wanted}; pass --port")
    settings = AgentSettings(
        host=endpoint["host"], port=endpoint["port"], token=token, tls=endpoint["tls"],
        ca_certificate=endpoint.get("caCertificate"), ca_fingerprint=endpoint.get("caFingerprint"),
        serve=False, hold_binds=False, direct=not relay,
        # A key for this run only: its certificate names the share, and nothing outlives it.
        identity_key=identity.new_key(),
    )  # fmt: skip
    output = Output(as_json)
    runtime = AgentRuntime(settings, on_state=reporter(output))

    async def prepare(rt: AgentRuntime) -> None:
        bound = await rt.add_reach(
            tunnel["id"], tunnel["name"], port, LOCALHOST, protocol=tunnel["protocol"]
        )
        output.result(
            {"tunnel": tunnel["name"], "localPort": bound},
            f"Joined {tunnel['name']} on localhost:{bound}{' (UDP)' if udp else ''}\n"
            f"  expires: {info.get('expiresAt') or 'never'}\n"
            "Press Ctrl-C to stop.",
        )

    run_foreground(runtime, prepare=prepare)
