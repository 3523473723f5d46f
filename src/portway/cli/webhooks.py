"""`portway webhooks`: subscribe URLs to events, test them, rotate secrets, read deliveries."""

from __future__ import annotations

from typing import Any

import click

from portway.cli.common import ApiOptions, api_options, list_items, show_item, when
from portway.cli.group import PortwayGroup
from portway.domain.webhook_rules import DELIVERY_STATUSES


def _state(hook: dict[str, Any]) -> str:
    if hook["enabled"]:
        return "failing" if hook["failingSince"] else "enabled"
    return f"disabled ({hook['disabledReason']})" if hook["disabledReason"] else "disabled"


def _last_attempt(delivery: dict[str, Any]) -> str:
    if not delivery["attempts"]:
        return "-"
    last = delivery["attempts"][-1]
    outcome = str(last["statusCode"]) if last["statusCode"] is not None else last["error"]
    latency = f" in {last['latencyMs']} ms" if last["latencyMs"] is not None else ""
    return f"{outcome}{latency}"


@click.group(cls=PortwayGroup)
def webhooks() -> None:
    """Webhooks: HTTP endpoints that receive your workspace's events, signed."""


@webhooks.command("ls")
@api_options
def list_webhooks(api: ApiOptions) -> None:
    """List webhooks."""
    list_items(
        api,
        "/v1/webhooks",
        [
            ("ID", lambda w: w["id"]),
            ("URL", lambda w: w["url"]),
            ("EVENTS", lambda w: ", ".join(w["events"])),
            ("STATE", _state),
            ("DESCRIPTION", lambda w: w["description"]),
        ],
    )


@webhooks.command("create")
@click.argument("url")
@click.option(
    "--event", "events", multiple=True,
    help="An event type to receive (repeat for more; default: all, '*').",
)  # fmt: skip
@click.option("--description", help="What the webhook is for.")
@click.option("--disabled", is_flag=True, help="Create it switched off.")
@api_options
def create_webhook(
    url: str, events: tuple[str, ...], description: str | None, disabled: bool, api: ApiOptions
) -> None:
    """Subscribe URL to events and print its signing secret (shown once)."""
    body: dict[str, Any] = {"url": url, "enabled": not disabled}
    if events:
        body["events"] = list(events)
    if description is not None:
        body["description"] = description
    with api.client() as client:
        created = client.post("/v1/webhooks", body)
    api.output.result(
        created,
        f"Created webhook {created['id']} for {created['url']}.\n"
        f"Signing secret (shown once): {created['secret']}",
    )


@webhooks.command("show")
@click.argument("webhook_id")
@api_options
def show_webhook(webhook_id: str, api: ApiOptions) -> None:
    """Show one webhook."""
    show_item(
        api,
        f"/v1/webhooks/{webhook_id}",
        lambda w: [
            ("id", w["id"]),
            ("url", w["url"]),
            ("events", ", ".join(w["events"])),
            ("state", _state(w)),
            ("failing since", when(w["failingSince"])),
            ("description", w["description"]),
            ("secret", w["secretPrefix"] + "… (shown only at creation and rotation)"),
            ("created", when(w["createdAt"])),
        ],
    )


@webhooks.command("rm")
@click.argument("webhook_id")
@api_options
def remove_webhook(webhook_id: str, api: ApiOptions) -> None:
    """Delete a webhook with its queued deliveries."""
    with api.client() as client:
        client.delete(f"/v1/webhooks/{webhook_id}")
    api.output.result({"deleted": webhook_id}, f"Removed webhook {webhook_id}.")


def _set_enabled(webhook_id: str, enabled: bool, api: ApiOptions) -> None:
    with api.client() as client:
        found = client.patch(f"/v1/webhooks/{webhook_id}", {"enabled": enabled})
    api.output.result(found, f"Webhook {found['id']} is {_state(found)}.")


@webhooks.command("enable")
@click.argument("webhook_id")
@api_options
def enable_webhook(webhook_id: str, api: ApiOptions) -> None:
    """Switch a webhook on; deliveries held while it was off are sent, oldest first."""
    _set_enabled(webhook_id, True, api)


@webhooks.command("disable")
@click.argument("webhook_id")
@api_options
def disable_webhook(webhook_id: str, api: ApiOptions) -> None:
    """Switch a webhook off; new deliveries wait until it is enabled again."""
    _set_enabled(webhook_id, False, api)


@webhooks.command("test")
@click.argument("webhook_id")
@api_options
def test_webhook(webhook_id: str, api: ApiOptions) -> None:
    """Queue a signed `webhook.test` message to the webhook's URL."""
    with api.client() as client:
        delivery = client.post(f"/v1/webhooks/{webhook_id}/test")
    api.output.result(
        delivery,
        f"Queued test delivery {delivery['id']}.\n"
        f"Follow it with: portway webhooks deliveries {webhook_id}",
    )


@webhooks.command("rotate-secret")
@click.argument("webhook_id")
@api_options
def rotate_secret(webhook_id: str, api: ApiOptions) -> None:
    """Issue a new signing secret (shown once); the old one stops being used at once."""
    with api.client() as client:
        rotated = client.post(f"/v1/webhooks/{webhook_id}/rotate-secret")
    api.output.result(
        rotated, f"New signing secret for webhook {rotated['id']} (shown once): {rotated['secret']}"
    )


@webhooks.command("deliveries")
@click.argument("webhook_id")
@click.option("--status", type=click.Choice(DELIVERY_STATUSES), help="Only this state.")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
    help="How many of the latest deliveries to show.",
)  # fmt: skip
@api_options
def list_deliveries(webhook_id: str, status: str | None, limit: int, api: ApiOptions) -> None:
    """Show the webhook's deliveries, newest first, with their attempts."""
    list_items(
        api,
        f"/v1/webhooks/{webhook_id}/deliveries",
        [
            ("ID", lambda d: d["id"]),
            ("EVENT", lambda d: d["eventType"]),
            ("STATUS", lambda d: d["status"]),
            ("ATTEMPTS", lambda d: len(d["attempts"])),
            ("LAST ATTEMPT", _last_attempt),
            ("NEXT", lambda d: when(d["nextAttemptAt"]) if d["nextAttemptAt"] else None),
            ("CREATED", lambda d: when(d["createdAt"])),
        ],
        limit=limit,
        status=status,
    )
