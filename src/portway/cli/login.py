"""`portway login`: check a hub URL and API key, then save them as a profile."""

from __future__ import annotations

import click

from portway.cli.agent_setup import pin_endpoint
from portway.cli.output import Output
from portway.cli.profile import DEFAULT_PROFILE, Profile, load_profile, save_profile
from portway.client import PortwayClient, normalise_hub_url


@click.command()
@click.option(
    "--hub",
    "hub_url",
    envvar="PORTWAY_HUB",
    required=True,
    help="Hub API URL, e.g. http://127.0.0.1:7080 [env: PORTWAY_HUB].",
)
@click.option(
    "--api-key",
    envvar="PORTWAY_API_KEY",
    required=True,
    help="API key (pw_…) [env: PORTWAY_API_KEY].",
)
@click.option(
    "--profile", default=DEFAULT_PROFILE, show_default=True, help="Profile name to save under."
)
@click.option(
    "--ca-fingerprint", help="SHA-256 of the hub's CA, as printed at hub start (pins it)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def login(
    hub_url: str, api_key: str, profile: str, ca_fingerprint: str | None, as_json: bool
) -> None:
    """Save a hub and API key after checking that the hub accepts them."""
    hub_url = normalise_hub_url(hub_url)
    with PortwayClient(hub_url, api_key) as client:
        info = client.get("/v1/hub")
    saved = load_profile(profile)
    if saved.hub != hub_url:
        # A different hub: the agent identity of the old one means nothing here.
        saved = Profile()
    saved.hub, saved.api_key = hub_url, api_key
    if info.get("agentEndpoint"):
        pin_endpoint(saved, info, ca_fingerprint)
    path = save_profile(saved, profile)
    workspace = info["workspace"]
    Output(as_json).result(
        {"hub": hub_url, "profile": profile, "configFile": str(path), "workspace": workspace},
        f"Logged in to {hub_url} (workspace {workspace['name']}). Saved to {path}.",
    )
