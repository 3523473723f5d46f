"""Every error Portway raises on purpose, in one tree.

    PortwayError                   message fit to show a user, stable snake_case `code`, `details`
    ├── NotFound                   no such object (in this scope)                            404
    │   └── Gone                   it existed but cannot be used any more                    410
    ├── Conflict                   the object's state, or a unique value, forbids it         409
    ├── InvalidInput (ValueError)  a value given by a user or a caller cannot be used        422
    │   └── ConfigError            a flag, environment variable or config file value is wrong
    ├── Unauthorized               the caller could not be authenticated                     401
    ├── Forbidden                  authenticated, but not allowed to do this                 403
    ├── Unavailable                a peer, session, target or dependency cannot serve it now 503
    ├── ProtocolViolation          a peer broke the protocol it speaks (Portway wire, HTTP)  400
    └── ClientError                the CLI or an agent could not get what it asked for
        ├── HubUnreachable         no TCP connection, name resolution failure, timeout
        └── ApiError               the hub answered with an error document

The families are what callers catch and what `portway.api.problems` maps to HTTP statuses (the
numbers above): a layer defines its own errors as subclasses of one family, with a default
`code` of their own, and raises them with the message, code and details a user should see. The
API turns any of them into ``{"error": {"code", "message", "details"}}`` in one handler, so no
router translates errors by hand; the CLI prints a `ConfigError` or a `ClientError` as one line.

An error about one input field names it in `field`: the API then shows the message as
``"<field>: <message>"`` and, unless the error brings its own `details`, lists the field as
``[{"field", "message", "type"}]``, the shape request validation uses too. `str()` of such an
error is the bare message.

Who defines what (each module's docstring says who raises it):

* `domain`: `AddressError`, `PolicyError`, `HubPortError`, `UrlError` (InvalidInput).
* `store`: `NoSuchRow` (NotFound); `Duplicate`, `HubPortTaken`, `NoFreeHubPort`,
  `LocalPortTaken`, `LastKey` (Conflict); `BadCursor` (InvalidInput).
* `wire`: `ProtocolError` (ProtocolViolation); `MuxError` and its subclasses (Unavailable).
* `net`: `ConnectionClosed`, `StreamResetError`, `E2eFailed` (Unavailable, and still
  `ConnectionError`s); `PinMismatch`, `BadCertificateRequest` (InvalidInput); `PeerRejected`
  (Forbidden).
* `agent`: `DialError` (Unavailable), `AgentRefused` (Unauthorized).
* `hub`: `EgressError` (InvalidInput), `TunnelUnavailable`, `NoChannel` (Unavailable),
  `HttpProtocolError` of the edge's HTTP/1.1 (ProtocolViolation).
* `probe`: `ProbeError` (ProtocolViolation).
* `cli`: `NotReached` (ClientError).

One private exception has no family: `hub.edge.http1.connections._HeadDone` only stops the
HTTP parser at a HEAD response's head, inside that module.

This module imports nothing of Portway, so every layer, `wire` and `domain` included, may
import it.
"""

from __future__ import annotations

from typing import Any


def field_details(field: str, message: str, type: str) -> list[dict[str, str]]:
    """`details` naming one field, in the shape request validation errors have."""
    return [{"field": field, "message": message, "type": type}]


class PortwayError(Exception):
    """Base of every deliberate Portway error; its message is fit to show a user as is.

    `code` is stable and snake_case: each class has a default, a raise site may pass a more
    precise one. `details` is anything JSON can carry (None when there is nothing to add).
    `field` names the input the error is about (see the module docstring).
    """

    code: str = "error"
    field: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if field is not None:
            self.field = field
        if details is None and self.field is not None:
            details = field_details(self.field, message, self.field)
        self.details = details


# -- the families ---------------------------------------------------------------------------------


class NotFound(PortwayError):
    """No such object; another workspace's object looks exactly like a missing one."""

    code = "not_found"


class Gone(NotFound):
    """The object existed but cannot be used any more (a revoked or expired share)."""

    code = "gone"


class Conflict(PortwayError):
    """The object's current state, or a value that must be unique, forbids what was asked."""

    code = "conflict"


class InvalidInput(PortwayError, ValueError):
    """A value given by a user or a caller cannot be used; the message says which and why.

    Also a `ValueError`, so pydantic validators and ``except ValueError`` callers keep working.
    """

    code = "validation_failed"


class Unauthorized(PortwayError):
    """The caller could not be authenticated (no key, a bad or revoked key or token)."""

    code = "unauthorized"


class Forbidden(PortwayError):
    """The caller is known but may not do this."""

    code = "forbidden"


class Unavailable(PortwayError):
    """A peer, session, target or dependency cannot serve this now; trying later may work."""

    code = "unavailable"


class ProtocolViolation(PortwayError):
    """A peer broke the protocol it speaks: the Portway wire protocol, HTTP/1.1, a probed one."""

    code = "protocol_error"


class ClientError(PortwayError):
    """The CLI or an agent could not get what it asked for (mostly: a request to the hub failed)."""

    code = "client_error"


# -- members defined here: the CLI and the API client use them ------------------------------------


class ConfigError(InvalidInput):
    """A configuration value (flag, ``PORTWAY_*`` variable, TOML file) is invalid."""

    code = "invalid_config"


class HubUnreachable(ClientError):
    """The hub could not be reached at all."""

    code = "hub_unreachable"


class ApiError(ClientError):
    """The hub answered with an error document; `code`, `message` and `details` are its own."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message, code=code, details=details)
        self.status = status

    def __str__(self) -> str:
        return f"{self.message} ({self.code}, HTTP {self.status})"


FAMILIES: tuple[type[PortwayError], ...] = (
    NotFound,
    Conflict,
    InvalidInput,
    Unauthorized,
    Forbidden,
    Unavailable,
    ProtocolViolation,
    ClientError,
)
"""The direct subclasses of `PortwayError`; every other Portway error is in exactly one."""
