"""Example documents for the OpenAPI description of tunnels, connections and shares.

`portway.api.tunnel_schemas` attaches them to its models and the routers to request bodies;
the schemathesis test replays the request examples against a live hub, with real ids.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

EXAMPLE_AGENT_ID = "7d9f2c1e-4b3a-4f6e-9a8b-1c2d3e4f5a6b"
EXAMPLE_TUNNEL_ID = "2f1e0d9c-8b7a-4c6d-9e5f-4a3b2c1d0e9f"
EXAMPLE_TIME = "2026-01-01T12:00:00Z"
EXAMPLE_SHARE_ID = "5c4b3a29-1807-4f6e-8d5c-4b3a2918f7e6"
EXAMPLE_CONNECTION_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
EXAMPLE_TOKEN = "pws_Ab3dE9xQ4kLm8NpR2sTv6wXy0zB5cD7fG1hJ3kL5mN7"  # noqa: S105 - made up


def example(value: dict[str, Any]) -> ConfigDict:
    """Model config adding one example document to the model's OpenAPI schema."""
    return ConfigDict(json_schema_extra={"examples": [value]})


SHARE_EXAMPLE: dict[str, Any] = {
    "id": EXAMPLE_SHARE_ID,
    "tunnelId": EXAMPLE_TUNNEL_ID,
    "name": "Partner preview",
    "description": "Read-only access for Acme's QA team",
    "tokenPrefix": EXAMPLE_TOKEN[:12],
    "status": "active",
    "expiresAt": "2026-01-08T12:00:00Z",
    "allowedMethods": ["GET", "HEAD"],
    "allowedPaths": ["/api/"],
    "rateLimit": 60,
    "createdAt": EXAMPLE_TIME,
    "revokedAt": None,
    "accessCount": 0,
    "lastAccessedAt": None,
}


TUNNEL_CREATE_EXAMPLES: dict[str, Any] = {
    "database": {
        "summary": "A private PostgreSQL, protocol and name chosen by the hub",
        "value": {"target": "localhost:5432", "agentId": EXAMPLE_AGENT_ID},
    },
    "public-http": {
        "summary": "A public web app with a one-day lifetime",
        "value": {
            "target": {"host": "127.0.0.1", "port": 3000},
            "agentId": EXAMPLE_AGENT_ID,
            "name": "staging-web",
            "public": True,
            "expiresIn": "24h",
            "metadata": {"team": "web"},
        },
    },
    "public-tcp": {
        "summary": "A public TCP service on an allocated hub port",
        "value": {
            "target": "[::1]:6379",
            "agentId": EXAMPLE_AGENT_ID,
            "protocol": "tcp",
            "public": True,
            "expiresIn": 3600,
        },
    },
}

TUNNEL_UPDATE_EXAMPLES: dict[str, Any] = {
    "pause": {"summary": "Pause", "value": {"status": "paused"}},
    "resume": {"summary": "Resume", "value": {"status": "active"}},
    "rename": {"summary": "Rename and re-tag", "value": {"name": "prod-db-ro", "metadata": {}}},
}

CONNECT_EXAMPLES: dict[str, Any] = {
    "same-port": {"summary": "Bind the target's port", "value": {"agentId": EXAMPLE_AGENT_ID}},
    "other-port": {
        "summary": "Bind another local port",
        "value": {"agentId": EXAMPLE_AGENT_ID, "localPort": 15432},
    },
}

SHARE_CREATE_EXAMPLES: dict[str, Any] = {
    "read-only": {
        "summary": "Read-only API access for a week",
        "value": {
            "name": "Partner preview",
            "description": "Read-only access for Acme's QA team",
            "expiresIn": "7d",
            "allowedMethods": ["GET", "HEAD"],
            "allowedPaths": ["/api/"],
            "rateLimit": 60,
        },
    },
    "minimal": {"summary": "A one-day link", "value": {"name": "demo"}},
}
