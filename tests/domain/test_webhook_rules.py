"""Webhook rules: secrets and signatures (checked against `standardwebhooks`), subscriptions,
URL shapes, the retry schedule and the address guard."""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from portway.domain import webhook_rules as rules
from portway.domain.event_kinds import EVENT_TYPES
from portway.domain.netguard import forbidden_reason, parse_address


def test_secret_is_whsec_and_32_random_bytes() -> None:
    secret = rules.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert rules.secret_key(secret) == base64.b64decode(secret[6:])
    assert rules.new_secret() != secret
    assert rules.secret_prefix(secret) == secret[:14] and len(rules.secret_prefix(secret)) == 14


def test_signature_verifies_with_standardwebhooks() -> None:
    secret = rules.new_secret()
    now = int(time.time())
    body = rules.message_body("tunnel.created", datetime.now(UTC), {"tunnel": {"name": "pg"}})
    headers = rules.headers(secret, "msg_1", now, body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(rules.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("pg", "pq"), headers)


def test_signature_matches_the_specification_example() -> None:
    # The example of the Standard Webhooks specification (and of its reference libraries).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"test": 2432232314}'
    signature = rules.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_message_body_shape_is_stable() -> None:
    at = datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
    body = rules.message_body("share.expired", at, {"b": 1, "a": "é"})
    assert json.loads(body) == {
        "type": "share.expired",
        "timestamp": "2026-01-01T12:00:00.123000Z",
        "data": {"a": "é", "b": 1},
    }
    assert body == rules.message_body("share.expired", at, {"a": "é", "b": 1})


def test_subscriptions() -> None:
    assert rules.normalise_events(["tunnel.created", "tunnel.created", "share.expired"]) == [
        "tunnel.created",
        "share.expired",
    ]
    assert rules.normalise_events(["tunnel.created", "*"]) == ["*"]
    with pytest.raises(ValueError, match="not an event type"):
        rules.normalise_events(["tunnel.exploded"])
    with pytest.raises(ValueError, match="at least one"):
        rules.normalise_events([])
    assert rules.subscribed(["*"], "agent.connected")
    assert rules.subscribed(["tunnel.expired"], "tunnel.expired")
    assert not rules.subscribed(["tunnel.expired"], "tunnel.deleted")
    for kind in ("tunnel.expired", "share.expired", "connection.created", "webhook.disabled"):
        assert kind in EVENT_TYPES


@pytest.mark.parametrize(
    "url",
    ["https://example.com/hook", "http://10.0.0.1:8080/x?y=1", "http://[::1]:9000/", "HTTPS://A.B"],
)
def test_url_shapes_accepted(url: str) -> None:
    assert rules.check_url(f"  {url} ") == url


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ftp://example.com/", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("http:///path", "must name a host"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://example.com:0/", "port 0"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/#frag", "fragment"),
        ("https://example.com/" + "a" * 2048, "at most 2048"),
    ],
)
def test_url_shapes_refused(url: str, needle: str) -> None:
    with pytest.raises(rules.UrlError, match=needle):
        rules.check_url(url)


def test_retry_policy_schedule_and_jitter() -> None:
    policy = rules.RetryPolicy()
    assert policy.max_attempts >= 6
    assert sum(policy.delays) >= 20 * 3600  # about a day from first to last attempt
    assert policy.delays == tuple(sorted(policy.delays))
    fixed = rules.RetryPolicy(delays=(5.0, 300.0), jitter=0.0)
    assert [fixed.delay_after(n) for n in (1, 2, 3)] == [5.0, 300.0, None]
    assert fixed.delay_after(0) is None
    jittery = rules.RetryPolicy(delays=(100.0,), jitter=0.2, rng=random.Random(7))
    draws = {jittery.delay_after(1) for _ in range(50)}
    assert all(d is not None and 80.0 <= d <= 120.0 for d in draws)
    assert len(draws) > 10  # really random, so a fleet of hubs does not retry in lockstep


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),
        ("100.64.0.1", "not globally routable"),
        ("192.0.2.10", "private"),
    ],
)
def test_forbidden_addresses(address: str, reason: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


def test_parse_address() -> None:
    assert parse_address("[::1]") == ipaddress.ip_address("::1")
    assert parse_address("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert parse_address("example.com") is None
