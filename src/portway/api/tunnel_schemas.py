"""Request and response bodies of `/v1/tunnels`, connections and shares.

Bounds live here (pydantic turns a breach into a 422 naming the field); rules that need no
I/O are delegated to `portway.domain.tunnel_rules` and `portway.domain.share_rules`, whose
errors (`AddressError`, ...) are `ValueError`s pydantic reports like its own. Integers and
booleans are strict: `"5432"` or `true` is not a port, `1` is not `public`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator, StrictBool

from portway.api.diagnostic_schemas import DetectedProtocol, ProbeOut
from portway.api.schemas import DisplayName, Model, SlugName
from portway.api.tunnel_examples import (
    EXAMPLE_AGENT_ID,
    EXAMPLE_CONNECTION_ID,
    EXAMPLE_SHARE_ID,
    EXAMPLE_TIME,
    EXAMPLE_TOKEN,
    EXAMPLE_TUNNEL_ID,
    SHARE_EXAMPLE,
    example,
)
from portway.domain import share_rules
from portway.domain import tunnel_rules as rules
from portway.domain.addresses import parse_host_port

Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
TtlSeconds = Annotated[int, Field(ge=1, le=rules.MAX_TTL_SECONDS, description="Seconds")]


def _expires_in(value: Any) -> str | int:
    # One error naming `expiresIn`, instead of one per member of a union.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be one of 1h, 24h, 7d, 30d, never, or a number of seconds")
    rules.ttl(value)
    return value


ExpiresIn = Annotated[
    str | int,
    PlainValidator(_expires_in, json_schema_input_type=rules.ExpiresPreset | TtlSeconds),
    Field(description="`1h`, `24h`, `7d`, `30d`, `never`, or a number of seconds up to a year"),
]


def _target_from_text(value: Any) -> Any:
    """Turn `"host:port"` into the object form; objects pass through to `Target`."""
    if not isinstance(value, str):
        return value
    if len(value) > MAX_TARGET_TEXT:
        raise ValueError(f"target must be at most {MAX_TARGET_TEXT} characters")
    parsed = parse_host_port(value)  # an AddressError is a ValueError: pydantic's 422
    return {"host": parsed.host, "port": parsed.port}


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    return rules.check_metadata(value)


Metadata = Annotated[
    dict[str, Any],
    AfterValidator(_metadata),
    Field(
        description="Any JSON object, at most 16 KiB as compact UTF-8 JSON; returned as given",
        examples=[{"team": "payments", "ci": {"run": 4812}}],
    ),
]


class Target(Model):
    """Where the exposing agent dials: a host name or IP literal (IPv6 without brackets)."""

    host: Annotated[
        str, Field(min_length=1, max_length=253), AfterValidator(rules.check_target_host)
    ] = Field(examples=["localhost"])
    port: Port = Field(examples=[5432])


MAX_TARGET_TEXT = 263  # 253-character host, brackets, colon and five digits
TargetText = Annotated[
    str, Field(min_length=3, max_length=MAX_TARGET_TEXT, examples=["localhost:5432", "[::1]:5432"])
]
TargetIn = Annotated[
    Target,
    BeforeValidator(_target_from_text, json_schema_input_type=TargetText | Target),
    Field(description='`"host:port"` (IPv6 as `"[::1]:5432"`) or `{"host": ..., "port": ...}`'),
]


class TunnelCreate(Model):
    target: TargetIn
    agent_id: uuid.UUID = Field(description="The agent of this workspace that exposes the service")
    name: SlugName | None = Field(
        default=None, description="Unique in the workspace; generated (`postgres-k3f9`) if absent"
    )
    protocol: rules.RequestedProtocol = Field(
        default="auto", description="`auto` guesses from the target port until the agent probes"
    )
    public: StrictBool = Field(
        default=False,
        description="HTTP(S): a public URL on the edge; TCP/UDP: a port on the hub",
    )
    hub_port: Port | None = Field(
        default=None,
        description="Port on the hub for a public TCP/UDP tunnel, inside the hub's range; "
        "allocated when omitted",
    )
    metadata: Metadata | None = None
    expires_in: ExpiresIn | None = Field(default=None, description="Lifetime; never by default")


class TunnelUpdate(Model):
    name: SlugName | None = None
    status: Literal["active", "paused"] | None = Field(
        default=None,
        description="`paused` refuses new connections and closes live ones; `active` resumes",
    )
    metadata: Metadata | None = Field(default=None, description="Replaces the metadata")


class TunnelStats(Model):
    active_connections: int
    total_connections: int
    bytes_in: int
    bytes_out: int
    last_connection_at: datetime | None
    datagrams_in: int = Field(description="UDP: datagrams carried towards the target")
    datagrams_out: int = Field(description="UDP: datagrams carried back to visitors")
    datagrams_dropped: int = Field(
        description="UDP: datagrams dropped (overload, paused tunnel, no agent serving it)"
    )


class TunnelOut(Model):
    model_config = example(
        {
            "id": EXAMPLE_TUNNEL_ID,
            "name": "staging-web",
            "agentId": EXAMPLE_AGENT_ID,
            "target": {"host": "127.0.0.1", "port": 3000},
            "protocol": "http",
            "requestedProtocol": "auto",
            "detectedProtocol": "http",
            "probe": {
                "protocol": "http",
                "version": "nginx/1.26.3",
                "tls": None,
                "authRequired": False,
                "detail": "HTTP 200, nginx/1.26.3",
                "probedAt": EXAMPLE_TIME,
                "mismatch": None,
            },
            "public": True,
            "publicUrl": "http://staging-web-x8k2q1.localhost:7081",
            "hubPort": None,
            "status": "active",
            "statusReason": None,
            "metadata": {"team": "web"},
            "createdAt": EXAMPLE_TIME,
            "updatedAt": EXAMPLE_TIME,
            "expiresAt": "2026-01-02T12:00:00Z",
            "stats": {
                "activeConnections": 2,
                "totalConnections": 31,
                "bytesIn": 48213,
                "bytesOut": 1930211,
                "lastConnectionAt": EXAMPLE_TIME,
                "datagramsIn": 0,
                "datagramsOut": 0,
                "datagramsDropped": 0,
            },
        }
    )

    id: uuid.UUID
    name: str = Field(examples=["prod-db"])
    agent_id: uuid.UUID
    target: Target
    protocol: rules.Protocol = Field(description="The protocol in use (resolved from `auto`)")
    requested_protocol: rules.RequestedProtocol
    detected_protocol: DetectedProtocol | None = Field(
        description="What the exposing agent's protocol probe found; null until it ran"
    )
    probe: ProbeOut | None = Field(description="The rest of the last probe's finding")
    public: bool
    public_url: str | None = Field(
        description="`http://<slug>.<domain>:<edge-port>` (HTTP) or `tcp|udp://<domain>:<hubPort>`"
        " for a public tunnel; null otherwise",
        examples=["http://prod-api-x8k2q1.localhost:7081"],
    )
    hub_port: int | None
    status: rules.TunnelStatus
    status_reason: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    stats: TunnelStats


class ConnectionCreate(Model):
    agent_id: uuid.UUID = Field(description="The agent of this workspace that receives the tunnel")
    local_port: Port | None = Field(
        default=None, description="Port to bind on the agent's localhost; the target port if absent"
    )


class ConnectionOut(Model):
    model_config = example(
        {
            "id": EXAMPLE_CONNECTION_ID,
            "tunnelId": EXAMPLE_TUNNEL_ID,
            "agentId": EXAMPLE_AGENT_ID,
            "localHost": "localhost",
            "localPort": 5432,
            "protocol": "tcp",
            "connectionString": "postgresql://localhost:5432/postgres",
            "status": "pending",
            "statusReason": None,
            "createdAt": EXAMPLE_TIME,
        }
    )

    id: uuid.UUID
    tunnel_id: uuid.UUID
    agent_id: uuid.UUID
    local_host: Literal["localhost"]
    local_port: int
    protocol: rules.Protocol
    connection_string: str = Field(examples=["postgresql://localhost:5432/postgres"])
    status: Literal["pending", "bound", "error"] = Field(
        description="`pending` until the agent has bound the local port"
    )
    status_reason: str | None
    created_at: datetime


def _methods(values: list[str]) -> list[str]:
    return share_rules.normalise_methods(values)


def _paths(values: list[str]) -> list[str]:
    return share_rules.normalise_paths(values)


def _description(value: str) -> str:
    return share_rules.check_description(value)


class ShareCreate(Model):
    name: DisplayName = Field(examples=["Partner preview"])
    description: Annotated[str, Field(max_length=500), AfterValidator(_description)] | None = None
    expires_in: rules.ExpiresPreset = Field(
        default=share_rules.DEFAULT_EXPIRES_IN,
        description="`1h`, `24h` (default), `7d`, `30d` or `never`",
    )
    allowed_methods: (
        Annotated[
            list[Annotated[str, Field(max_length=16)]],
            Field(min_length=1, max_length=20),
            AfterValidator(_methods),
        ]
        | None
    ) = Field(
        default=None,
        description="HTTP/HTTPS tunnels only: any of GET, HEAD, POST, PUT, PATCH, DELETE, "
        "OPTIONS (case-insensitive); all when omitted",
        examples=[["GET", "HEAD"]],
    )
    allowed_paths: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=share_rules.MAX_PATH_LENGTH)]],
            Field(min_length=1, max_length=share_rules.MAX_PATHS),
            AfterValidator(_paths),
        ]
        | None
    ) = Field(
        default=None,
        description="Path prefixes, each starting with `/`; every path when omitted",
        examples=[["/api/", "/health"]],
    )
    rate_limit: (
        Annotated[
            int,
            Field(ge=share_rules.MIN_RATE_LIMIT, le=share_rules.MAX_RATE_LIMIT, strict=True),
        ]
        | None
    ) = Field(default=None, description="Requests per minute, 1-1000; unlimited when omitted")


class ShareOut(Model):
    model_config = example(SHARE_EXAMPLE)

    id: uuid.UUID
    tunnel_id: uuid.UUID
    name: str
    description: str | None
    token_prefix: str = Field(examples=["pws_Ab3dE9xQ"])
    status: share_rules.ShareStatus
    expires_at: datetime | None
    allowed_methods: list[str] | None
    allowed_paths: list[str] | None
    rate_limit: int | None
    created_at: datetime
    revoked_at: datetime | None
    access_count: int
    last_accessed_at: datetime | None


class ShareCreated(ShareOut):
    model_config = example(
        {
            **SHARE_EXAMPLE,
            "token": EXAMPLE_TOKEN,
            "shareUrl": f"http://localhost:7081/s/{EXAMPLE_TOKEN}/",
        }
    )

    token: str = Field(description="Shown in this response only; the hub keeps a hash")
    share_url: str = Field(
        description="The link to hand out: the edge's `/s/<token>/` for HTTP(S) tunnels, "
        "the API's `/v1/join/<token>` (for `portway join`) for TCP/UDP tunnels",
        examples=[f"http://localhost:7081/s/{EXAMPLE_TOKEN}/"],
    )


class AccessLogOut(Model):
    model_config = example(
        {
            "id": "0e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b",
            "shareId": EXAMPLE_SHARE_ID,
            "at": EXAMPLE_TIME,
            "remoteAddr": "203.0.113.7",
            "method": "POST",
            "path": "/api/orders",
            "statusCode": 403,
            "allowed": False,
            "reason": "method_not_allowed",
            "userAgent": "curl/8.5.0",
            "bytesIn": None,
            "bytesOut": None,
            "latencyMs": None,
        }
    )

    id: uuid.UUID
    share_id: uuid.UUID
    at: datetime
    remote_addr: str
    method: str | None
    path: str | None
    status_code: int | None
    allowed: bool
    reason: str | None
    user_agent: str | None
    bytes_in: int | None = Field(description="Request bytes sent to the target (null if refused)")
    bytes_out: int | None = Field(description="Response bytes from the target (null if refused)")
    latency_ms: float | None = Field(description="Time to the end of the response, in ms")
