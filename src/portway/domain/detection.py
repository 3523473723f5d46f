"""What a protocol probe's finding means for a tunnel, with no I/O.

The exposing agent probes a target (`portway.probe`) and reports what answered; the hub calls
`apply` to decide what to store, and the agent's diagnosis calls `contradiction` to grade its
handshake step. Both speak of the same rules so the API and `portway check` agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

LABELS: Final[dict[str, str]] = {
    "postgres": "PostgreSQL",
    "mysql": "MySQL",
    "redis": "Redis",
    "mongodb": "MongoDB",
    "http": "plain HTTP",
    "https": "HTTPS",
    "tcp": "an unrecognised protocol",
}


def label(kind: str) -> str:
    return LABELS.get(kind, kind)


def contradiction(protocol: str, detected: str) -> str | None:
    """Why `detected` cannot be carried as `protocol` (a tunnel's transport), or None.

    A `tcp` tunnel carries anything; `http` and `https` tunnels are parsed by the edge, so the
    target must speak exactly that. The message ends with what to do.
    """
    if protocol == "http" and detected == "https":
        return "the target speaks TLS but the tunnel's protocol is http: set protocol to https"
    if protocol == "https" and detected == "http":
        return (
            "the target speaks plain HTTP, not TLS, but the tunnel's protocol is https: "
            "set protocol to http"
        )
    if protocol in ("http", "https") and detected not in ("http", "https"):
        return (
            f"the target speaks {label(detected)}, not HTTP, but the tunnel's protocol is "
            f"{protocol}: use protocol tcp"
        )
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the hub stores after a probe: the transport (maybe switched) and any conflict."""

    protocol: str
    mismatch: str | None


def apply(requested: str, protocol: str, detected: str) -> Verdict:
    """Decide a tunnel's transport after a probe found `detected`.

    `requested: auto` takes the finding where it can without moving the tunnel's address: an
    auto tunnel switches between http and https (both answer at the same edge URL), while a
    tcp one stays tcp (a hub port cannot become a URL) and only its service kind follows the
    probe. An explicit protocol is never overridden: the contradiction is reported instead.
    """
    if requested == "auto" and protocol in ("http", "https") and detected in ("http", "https"):
        return Verdict(detected, None)
    return Verdict(protocol, contradiction(protocol, detected))


@dataclass(frozen=True, slots=True)
class Step:
    """One line of a diagnosis: `agent`, `dns`, `tcp`, `tls`, `handshake` or `latency`."""

    name: str
    status: str  # ok, warn, fail, skip
    ms: float | None
    detail: str


@dataclass(frozen=True, slots=True)
class Report:
    """A diagnosis through the real path (hub → agent → target), as the API keeps it."""

    steps: tuple[Step, ...]
    latency_ms: float | None  # round trip hub → agent → target, when the target answered
    detected: dict[str, object] | None  # the probe finding, in the API's field names

    @property
    def ok(self) -> bool:
        return all(step.status != "fail" for step in self.steps)
