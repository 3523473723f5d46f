"""`portway webhooks` and `portway events` against a real hub and a real webhook receiver."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from click.testing import Result

from portway.testing.waiting import wait_until
from tests.cli.helpers import json_lines, json_of, new_agent, new_tunnel, run, suffix
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.usefixtures("logged_in")


@pytest.fixture(scope="module")
def hub_flags() -> dict[str, str]:
    # The receiver listens on loopback, so this hub allows private webhook URLs.
    return {"webhooks_allow_private": "on"}


def test_webhook_lifecycle() -> None:
    with Receiver() as receiver:
        created = run(
            "webhooks", "create", receiver.url, "--event", "tunnel.created",
            "--event", "tunnel.deleted", "--description", "CI",
        ).output  # fmt: skip
        hook_id = created.split()[2]
        receiver.secret = created.rsplit(" ", 1)[-1].strip()
        assert receiver.secret.startswith("whsec_")
        assert created == (
            f"Created webhook {hook_id} for {receiver.url}.\n"
            f"Signing secret (shown once): {receiver.secret}\n"
        )
        listed = run("webhooks", "ls").output
        assert hook_id in listed and receiver.url in listed and "enabled" in listed
        assert receiver.secret not in listed
        assert hook_id in [w["id"] for w in json_of(run("webhooks", "ls", "--json"))]
        shown = run("webhooks", "show", hook_id).output
        assert "tunnel.created, tunnel.deleted" in shown and receiver.secret[:14] in shown
        assert receiver.secret not in shown
        as_json = json_of(run("webhooks", "show", hook_id, "--json"))
        assert as_json["description"] == "CI" and "secret" not in as_json

        queued = json_of(run("webhooks", "test", hook_id, "--json"))
        assert queued["eventType"] == "webhook.test"
        wait_until(receiver.delivered, timeout=20, what="the test delivery")
        [got] = receiver.requests()
        assert got.verified and got.document["type"] == "webhook.test"
        assert got.message_id == queued["id"]

        def settled() -> list[dict[str, Any]]:
            items = json_of(run("webhooks", "deliveries", hook_id, "--json"))
            return [d for d in items if d["status"] == "succeeded"]

        wait_until(settled, timeout=20, what="a succeeded delivery")
        table = run("webhooks", "deliveries", hook_id).output
        assert "webhook.test" in table and "succeeded" in table and "200 in" in table

        printed = run("webhooks", "test", hook_id).output
        queued_id = printed.split()[3].rstrip(".")
        assert printed == (
            f"Queued test delivery {queued_id}.\n"
            f"Follow it with: portway webhooks deliveries {hook_id}\n"
        )

        rotated = run("webhooks", "rotate-secret", hook_id).output
        new_secret = rotated.rsplit(" ", 1)[-1].strip()
        assert new_secret.startswith("whsec_") and new_secret != receiver.secret
        assert rotated == f"New signing secret for webhook {hook_id} (shown once): {new_secret}\n"
        again = json_of(run("webhooks", "rotate-secret", hook_id, "--json"))
        assert again["id"] == hook_id and again["secret"] not in (new_secret, receiver.secret)
        assert run("webhooks", "disable", hook_id).output == f"Webhook {hook_id} is disabled.\n"
        assert json_of(run("webhooks", "enable", hook_id, "--json"))["enabled"]
        assert run("webhooks", "enable", hook_id).output == f"Webhook {hook_id} is enabled.\n"
        assert run("webhooks", "rm", hook_id).output == f"Removed webhook {hook_id}.\n"
        gone = run("webhooks", "show", hook_id, ok=False)
        assert gone.exit_code == 1 and gone.output == "error: webhook not found\n"
        other = json_of(run("webhooks", "create", receiver.url, "--disabled", "--json"))
        assert other["secret"].startswith("whsec_") and not other["enabled"]
        assert json_of(run("webhooks", "rm", other["id"], "--json")) == {"deleted": other["id"]}


def test_create_refuses_bad_input() -> None:
    bad = run("webhooks", "create", "ftp://example.com/", ok=False)
    assert bad.exit_code == 1 and bad.output.startswith("error: url:")
    unknown = run("webhooks", "create", "https://8.8.8.8/", "--event", "nope", ok=False)
    assert unknown.exit_code == 1 and "events" in unknown.output


def test_events_list_and_filter(api: httpx.Client) -> None:
    name = "ev-" + suffix()
    tunnel = new_tunnel(api, new_agent(api), name=name)
    api.delete(f"/v1/tunnels/{tunnel['id']}")
    latest = json_of(run("events", "--limit", "2", "--json"))
    assert [e["type"] for e in latest] == ["tunnel.created", "tunnel.deleted"]
    assert latest[0]["objectId"] == tunnel["id"]
    text = run("events", "--type", "tunnel.deleted", "--limit", "1").output
    assert "tunnel.deleted" in text and tunnel["id"] in text and name in text
    assert "(deleted)" in text
    after = json_of(run("events", "--after", str(latest[0]["seq"]), "--json"))
    assert [e["seq"] for e in after] == [latest[1]["seq"]]
    assert run("events", "--after", str(latest[1]["seq"])).output == "(none)\n"
    bad = run("events", "--type", "tunnel.exploded", ok=False)
    assert bad.exit_code == 2


@pytest.mark.parametrize("mode", [["--json"], []], ids=["json", "text"])
def test_events_follow(api: httpx.Client, mode: list[str]) -> None:
    [last] = api.get("/v1/events", params={"limit": 1}).json()["items"] or [{"seq": 0}]
    outcome: dict[str, Result] = {}
    after = ("--after", str(last["seq"]), "--type", "tunnel.created", *mode)

    def follow() -> None:
        outcome["result"] = run("events", "--follow", "--count", "2", *after, ok=False)

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    first = new_tunnel(api, new_agent(api), name="follow-" + suffix())
    api.delete(f"/v1/tunnels/{first['id']}")  # filtered out
    second = new_tunnel(api, new_agent(api), name="follow-" + suffix())
    watcher.join(timeout=30)
    assert not watcher.is_alive(), "portway events --follow did not see both tunnels"
    result = outcome["result"]
    assert result.exit_code == 0, result.output
    # Followed events print as listed ones do: the same lines, or one JSON object per line.
    listed = run("events", *after)
    if mode:
        printed = json_lines(result)
        assert printed == json_of(listed)
        objects = [e["objectId"] for e in printed]
    else:
        assert result.output == listed.output
        objects = [line.split()[4] for line in result.output.splitlines()]
    assert objects == [first["id"], second["id"]]
