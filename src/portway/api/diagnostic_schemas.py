"""Bodies of what agents found behind tunnels: probe findings and diagnostics runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from portway.api.schemas import Model

DetectedProtocol = Literal["postgres", "mysql", "redis", "mongodb", "http", "https", "tcp"]
StepStatus = Literal["ok", "warn", "fail", "skip"]


class TlsOut(Model):
    subject: str | None
    issuer: str | None
    not_after: str | None = Field(description="ISO 8601 UTC")
    version: str | None = Field(examples=["TLSv1.3"])


class DetectionOut(Model):
    protocol: DetectedProtocol
    version: str | None = Field(
        description="Server version where the protocol tells it", examples=["11.8.3-MariaDB"]
    )
    tls: TlsOut | None = Field(description="The target's certificate when it spoke TLS")
    auth_required: bool
    detail: str = Field(examples=["PostgreSQL, accepts TLS"])


class ProbeOut(DetectionOut):
    probed_at: datetime | None
    mismatch: str | None = Field(
        description="Why the finding contradicts the tunnel's explicit protocol (kept as is)"
    )


class StepOut(Model):
    name: Literal["agent", "dns", "tcp", "tls", "handshake", "latency"]
    status: StepStatus
    ms: float | None
    detail: str


class DiagnosticOut(Model):
    id: uuid.UUID
    tunnel_id: uuid.UUID
    created_at: datetime
    ok: bool = Field(description="No step failed")
    latency_ms: float | None = Field(
        description="Round trip hub → agent → target, when the target accepted a connection"
    )
    steps: list[StepOut]
    detected: DetectionOut | None


class DiagnosticList(Model):
    items: list[DiagnosticOut] = Field(description="The last 50 runs, newest first")
