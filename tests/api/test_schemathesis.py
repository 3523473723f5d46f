"""Property-based run over the whole OpenAPI document: no 500s, no response off its own schema.

The hub runs in-process (its own loop on a thread, serving real HTTP on loopback); schemathesis
generates requests for every operation from the document the hub itself publishes.
"""

from __future__ import annotations

from collections.abc import Iterator
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
        yield running


@pytest.fixture(scope="module")
def api_schema(hub: HubThread) -> Any:
    document = httpx.get(hub.api_url + "/openapi.json").json()
    return schemathesis.openapi.from_dict(document)


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.timeout(600)
def test_every_operation_conforms(api_schema: Any, hub: HubThread) -> None:
    headers = {"Authorization": f"Bearer {hub.admin_key}"}
    operations = _operations(api_schema)
    assert len(operations) >= 12
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(base_url=hub.api_url, headers=headers, checks=CHECKS)

        run()


def test_schema_describes_every_route(api_schema: Any) -> None:
    paths = set(api_schema.raw_schema["paths"])
    assert {"/healthz", "/v1/hub", "/v1/api-keys", "/v1/workspaces", "/v1/agents"} <= paths
    for path, methods in api_schema.raw_schema["paths"].items():
        for method, operation in methods.items():
            if path.startswith("/v1"):
                assert "401" in operation["responses"], (method, path)
