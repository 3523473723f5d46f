"""`POST /v1/tunnels` fields inside and one past their bounds: target, metadata, expiresIn."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from portway.api.context import ApiContext
from portway.domain import tunnel_rules as rules
from tests.api.helpers import assert_error, error_fields
from tests.api.tunnel_helpers import (
    metadata_of_size,
    new_tunnel,
    post_tunnel,
)


@pytest.mark.parametrize(
    ("target", "host", "port"),
    [
        ("localhost:1", "localhost", 1),
        ("localhost:65535", "localhost", 65535),
        ("[::1]:5432", "::1", 5432),
        ("10.0.0.5:5432", "10.0.0.5", 5432),
        ("h" * 253 + ":80", "h" * 253, 80),
        ({"host": "localhost", "port": 1}, "localhost", 1),
        ({"host": "localhost", "port": 65535}, "localhost", 65535),
        ({"host": "::1", "port": 5432}, "::1", 5432),
        ({"host": "h", "port": 80}, "h", 80),
        ({"host": "h" * 253, "port": 80}, "h" * 253, 80),
    ],
)
async def test_target_forms_and_bounds(
    api: httpx.AsyncClient, agent: str, target: object, host: str, port: int
) -> None:
    tunnel = await new_tunnel(api, agent, target=target)
    assert tunnel["target"] == {"host": host, "port": port}


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ("localhost:0", "target"),
        ("localhost:65536", "target"),
        ("localhost", "target"),
        (":5432", "target"),
        ("::1:5432", "target"),
        ("h" * 254 + ":80", "target"),
        ("a b:80", "target"),
        ("localhost:port", "target"),
        ("x" * 300, "target"),
        (5432, "target"),
        ({"host": "localhost", "port": 0}, "target.port"),
        ({"host": "localhost", "port": 65536}, "target.port"),
        ({"host": "localhost", "port": "5432"}, "target.port"),
        ({"host": "localhost", "port": True}, "target.port"),
        ({"host": "", "port": 80}, "target.host"),
        ({"host": "h" * 254, "port": 80}, "target.host"),
        ({"host": "[::1]", "port": 80}, "target.host"),
        ({"host": "a\x00b", "port": 80}, "target.host"),
        ({"host": "localhost"}, "target.port"),
        ({"host": "localhost", "port": 80, "tls": True}, "target.tls"),
    ],
)
async def test_target_refused(
    api: httpx.AsyncClient, agent: str, target: object, field: str
) -> None:
    response = await post_tunnel(api, agent, target=target)
    assert_error(response, 422, "validation_failed")
    assert error_fields(response) == {field}


async def test_metadata_bounds(api: httpx.AsyncClient, agent: str) -> None:
    limit = rules.METADATA_MAX_BYTES
    assert limit == 16384
    kept = await new_tunnel(api, agent, metadata=metadata_of_size(limit))
    assert kept["metadata"] == metadata_of_size(limit)
    for too_big in (metadata_of_size(limit + 1), metadata_of_size(limit + 2, "é")):
        response = await post_tunnel(api, agent, metadata=too_big)
        error = assert_error(response, 422)
        assert error_fields(response) == {"metadata"} and "16384" in error["message"]
    # Multi-byte characters count as bytes: 8 + 2 * 8188 = 16384.
    await new_tunnel(api, agent, metadata=metadata_of_size(limit, "é"))


async def test_metadata_is_stored_as_given(api: httpx.AsyncClient, agent: str) -> None:
    given = {"z": 1, "a": [1, 2.5, None, True, "ü"], "nested": {"deep": {"x": []}}, "n\x00": "\x00"}
    tunnel = await new_tunnel(api, agent, metadata=given)
    shown = (await api.get(f"/v1/tunnels/{tunnel['id']}")).json()["metadata"]
    assert shown == given and list(shown) == ["z", "a", "nested", "n\x00"]


@pytest.mark.parametrize(
    "raw",
    [b'["a"]', b'"text"', b"42", b'{"x": NaN}', b'{"x": Infinity}', b'{"x": 1e400}'],
)
async def test_metadata_must_be_a_plain_json_object(
    api: httpx.AsyncClient, agent: str, raw: bytes
) -> None:
    body = b'{"target": "localhost:5432", "agentId": "%s", "metadata": %s}' % (agent.encode(), raw)
    response = await api.post(
        "/v1/tunnels", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 422)
    assert {f.split(".")[0] for f in error_fields(response)} == {"metadata"}


@pytest.mark.parametrize(
    ("expires_in", "delta"),
    [
        ("1h", timedelta(hours=1)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("30d", timedelta(days=30)),
        (1, timedelta(seconds=1)),
        (31536000, timedelta(days=365)),
        ("never", None),
        (None, None),
    ],
)
async def test_expires_in(
    api: httpx.AsyncClient, agent: str, ctx: ApiContext, expires_in: object, delta: timedelta | None
) -> None:
    fields = {} if expires_in is None else {"expiresIn": expires_in}
    tunnel = await new_tunnel(api, agent, **fields)
    expected = (
        None if delta is None else (ctx.clock.now() + delta).isoformat().replace("+00:00", "Z")
    )
    assert tunnel["expiresAt"] == expected


@pytest.mark.parametrize("expires_in", [0, -1, 31536001, "2h", "1d", "", True, 3600.5, "3600"])
async def test_expires_in_refused(api: httpx.AsyncClient, agent: str, expires_in: object) -> None:
    response = await post_tunnel(api, agent, expiresIn=expires_in)
    error = assert_error(response, 422)
    assert error_fields(response) == {"expiresIn"}
    assert "1h, 24h, 7d, 30d, never" in error["message"] or "between 1 and" in error["message"]


@pytest.mark.parametrize(("field", "value"), [("public", 1), ("public", "true"), ("owner", "me")])
async def test_strict_and_unknown_fields(
    api: httpx.AsyncClient, agent: str, field: str, value: object
) -> None:
    response = await post_tunnel(api, agent, **{field: value})
    assert_error(response, 422)
    assert error_fields(response) == {field}
