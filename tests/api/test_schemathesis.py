"""Property-based run over the whole OpenAPI document: no 500s, no response off its own schema.

The hub runs in-process (its own loop on a thread, serving real HTTP on loopback); schemathesis
generates requests for every operation from the document the hub itself publishes.

Random ids almost never name an existing object, so on their own the generated requests would
stop at 404 and never reach the code behind it. Each operation therefore also runs with the
ids of real objects (an agent, a tunnel, a connection, a share, a webhook, made fresh for it)
swapped into its path, query and body, and with the request examples the document publishes;
the test then checks that the tunnel, share and webhook operations really succeeded at least
once.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from portway.testing.hub import HubThread

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubThread]:
    with HubThread(tmp_path_factory.mktemp("schemathesis") / "hub") as running:
        # Fuzzed webhooks queue deliveries; none of them is ever sent anywhere.
        worker = running.hub.webhooks
        assert worker is not None
        asyncio.run_coroutine_threadsafe(worker.stop(), running._loop).result(timeout=30)
        yield running


@pytest.fixture(scope="module")
def api_schema(hub: HubThread) -> Any:
    document = httpx.get(hub.api_url + "/openapi.json").json()
    return schemathesis.openapi.from_dict(document)


# An event stream never ends on its own, so it cannot be fuzzed like a request/response;
# tests/api/routers/test_event_stream.py covers it.
ENDLESS = {("GET", "/v1/events/stream")}


def _operations(schema: Any) -> list[Any]:
    operations = [result.ok() for result in schema.get_all_operations()]
    return [op for op in operations if (op.method.upper(), op.path) not in ENDLESS]


# Path parameters, query parameters and body fields that name objects, and which object.
REAL_PATH = {
    "tunnel_ref": "tunnel",
    "share_id": "share",
    "connection_id": "connection",
    "webhook_id": "webhook",
}
REAL_QUERY = {"agentId": "agent", "tunnelId": "tunnel"}
REAL_BODY = {"agentId": "agent"}

# Operations that must have answered 2xx at least once: proof the run got past the lookups.
MUST_SUCCEED = {
    ("POST", "/v1/tunnels"),
    ("GET", "/v1/tunnels"),
    ("GET", "/v1/tunnels/{tunnel_ref}"),
    ("PATCH", "/v1/tunnels/{tunnel_ref}"),
    ("DELETE", "/v1/tunnels/{tunnel_ref}"),
    ("POST", "/v1/tunnels/{tunnel_ref}/connect"),
    ("GET", "/v1/tunnels/{tunnel_ref}/connections"),
    ("DELETE", "/v1/tunnels/{tunnel_ref}/connections/{connection_id}"),
    ("POST", "/v1/tunnels/{tunnel_ref}/shares"),
    ("GET", "/v1/tunnels/{tunnel_ref}/shares"),
    ("GET", "/v1/shares"),
    ("GET", "/v1/shares/{share_id}"),
    ("DELETE", "/v1/shares/{share_id}"),
    ("GET", "/v1/shares/{share_id}/access-logs"),
    # POST /v1/webhooks is proven by `_real_objects` (generated hosts rarely resolve).
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{webhook_id}"),
    ("PATCH", "/v1/webhooks/{webhook_id}"),
    ("DELETE", "/v1/webhooks/{webhook_id}"),
    ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"),
    ("POST", "/v1/webhooks/{webhook_id}/test"),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"),
    ("GET", "/v1/events"),
    ("GET", "/v1/audit-log"),
}


def _real_objects(hub: HubThread, headers: dict[str, str]) -> dict[str, str]:
    """A fresh agent with an HTTP tunnel, a connection to it and a share of it."""
    with httpx.Client(base_url=hub.api_url, headers=headers) as client:

        def made(path: str, body: dict[str, Any]) -> str:
            response = client.post(path, json=body)
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        agent = made("/v1/agents", {})
        tunnel = made("/v1/tunnels", {"target": "localhost:3000", "agentId": agent})
        connection = made(f"/v1/tunnels/{tunnel}/connect", {"agentId": agent})
        share = made(f"/v1/tunnels/{tunnel}/shares", {"name": "fixture"})
        # A public address literal: accepted without DNS, and never called (worker stopped).
        webhook = made("/v1/webhooks", {"url": "https://93.184.215.14/hook"})
    return {
        "agent": agent,
        "tunnel": tunnel,
        "connection": connection,
        "share": share,
        "webhook": webhook,
    }


def _with_real_ids(real: dict[str, str]) -> Callable[[Any], Any]:
    def swap(case: Any) -> Any:
        path = {
            k: real[REAL_PATH[k]] if k in REAL_PATH else v for k, v in case.path_parameters.items()
        }
        case.path_parameters = path
        if case.query:
            case.query = {
                k: real[REAL_QUERY[k]] if k in REAL_QUERY else v for k, v in case.query.items()
            }
        if isinstance(case.body, dict):
            case.body = {
                k: real[REAL_BODY[k]] if k in REAL_BODY else v for k, v in case.body.items()
            }
        return case

    return swap


@pytest.mark.timeout(600)
def test_every_operation_conforms(api_schema: Any, hub: HubThread) -> None:
    headers = {"Authorization": f"Bearer {hub.admin_key}"}
    operations = _operations(api_schema)
    assert len(operations) >= 12
    statuses: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for operation in operations:
        real: dict[str, str] = {}
        swap = _with_real_ids(real)
        fuzzed = operation.as_strategy()
        examples = operation.get_strategies_from_examples()
        strategies = [
            (fuzzed, 30),
            (fuzzed.map(swap), 15),
            *((example.map(swap), 2) for example in examples),
        ]
        for strategy, count in strategies:
            real.update(_real_objects(hub, headers))

            @given(case=strategy)
            @settings(
                max_examples=count,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                response = case.call_and_validate(
                    base_url=hub.api_url, headers=headers, checks=CHECKS
                )
                statuses[(case.method.upper(), case.path)].add(response.status_code)

            run()
    never = {op for op in MUST_SUCCEED if not any(200 <= s < 300 for s in statuses[op])}
    assert not never, f"never answered 2xx: {sorted(never)}; saw {dict(statuses)}"


def test_schema_describes_every_route(api_schema: Any) -> None:
    paths = set(api_schema.raw_schema["paths"])
    assert {"/healthz", "/v1/hub", "/v1/api-keys", "/v1/workspaces", "/v1/agents"} <= paths
    assert {path for _, path in MUST_SUCCEED} <= paths
    for path, methods in api_schema.raw_schema["paths"].items():
        for method, operation in methods.items():
            if path.startswith("/v1"):
                assert "401" in operation["responses"], (method, path)


def test_tunnel_and_share_operations_are_documented(api_schema: Any) -> None:
    """Every tunnel/share operation names its models, its error statuses and has examples."""
    document = api_schema.raw_schema
    for path, methods in document["paths"].items():
        if not path.startswith(("/v1/tunnels", "/v1/shares")):
            continue
        for method, operation in methods.items():
            responses = operation["responses"]
            success = next(code for code in responses if code.startswith("2"))
            if success != "204":
                assert "$ref" in str(responses[success]["content"]), (method, path)
            assert {"401", "404", "422"} <= set(responses), (method, path)
            assert operation.get("description"), (method, path)
            if "requestBody" in operation:
                media = operation["requestBody"]["content"]["application/json"]
                assert media.get("examples"), (method, path)
    for write in (("post", "/v1/tunnels"), ("patch", "/v1/tunnels/{tunnel_ref}")):
        assert "409" in document["paths"][write[1]][write[0]]["responses"], write
    assert "409" in document["paths"]["/v1/tunnels/{tunnel_ref}/connect"]["post"]["responses"]
